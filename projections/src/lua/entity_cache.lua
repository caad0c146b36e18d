-- (The library's `#!lua name=` line and the shared lease check, lua/lease.lua, are put ahead
-- of this source when it is compiled in: see crm.rs / entity_cache.rs.)

-- The entity cache's one write path: applies a batch of events to the cache and records, in the
-- same atomic step, the version applied for each entity (the gateway polls those versions for
-- read-your-writes). Because every event carries the whole entity, the cache is state-based: an
-- event is applied iff its version is above the version applied so far, so redelivery, replays
-- and any arrival order across the created/updated/deleted streams give the same cache.
--
-- FCALL cache_apply <numkeys> <keys...> <args...>
--   KEYS[1]        the projection's pause lease (see the runner)
--   KEYS[2..6]     applied versions per kind (customer, product, inventory, order, billing)
--   KEYS[7..11]    live id Sets per kind, same order
--   KEYS[12]       orders_unbilled    KEYS[13] orders_billed    KEYS[14] billings per order
--   KEYS[15..]     per event, in order: the entity Hash, then for an order its product List
--   ARGV[1..3]     mode ('live' | 'rebuild'), rebuild token, lease in ms
--   ARGV[4]        the channel of applied-versions notices
--   ARGV[5..]      per event: kind (1..5, order above), action ('created'|'updated'|'deleted'),
--                  id, version, n_fields, n_fields x (field, value), n_products, product ids...
--
-- In live mode, publishes on ARGV[4] `<kind>:<id>:<version>,...`: the version now applied for
-- each entity of the batch (gateways wake their read-your-writes waiters with it).
--
-- Returns {0, applied, skipped}, or {-1} when a rebuild pauses live batches, or {-2} when a
-- rebuild's lease is no longer held by its token.
--
-- Like any Redis script, a call that fails midway keeps the writes it made before the failure;
-- each event's version is recorded after its writes, so the events before a failing one are
-- complete (and skipped when the runner retries them one by one) and the failing one is not
-- marked applied.

local ORDER = 4
local BILLING = 5

-- One more live billing for an order: it is billed, hence not unbilled.
local function billing_added(keys, order_id)
  redis.call('HINCRBY', keys[14], order_id, 1)
  redis.call('SADD', keys[13], order_id)
  redis.call('SREM', keys[12], order_id)
end

-- One live billing less: when it was the last one, the order is unbilled again if it is live.
local function billing_removed(keys, order_id)
  if redis.call('HINCRBY', keys[14], order_id, -1) > 0 then
    return
  end
  redis.call('HDEL', keys[14], order_id)
  redis.call('SREM', keys[13], order_id)
  if redis.call('SISMEMBER', keys[6 + ORDER], order_id) == 1 then
    redis.call('SADD', keys[12], order_id)
  end
end

local function cache_apply(keys, args)
  local ok, code = lease_ok(keys, args)
  if not ok then
    return {code}
  end
  local applied, skipped = 0, 0
  local notices = {}
  local kp, ap = 15, 5
  while ap <= #args do
    local kind = tonumber(args[ap])
    local action = args[ap + 1]
    local id = args[ap + 2]
    local version = args[ap + 3]
    local n_fields = tonumber(args[ap + 4])
    local fields_at = ap + 5
    local n_products = tonumber(args[fields_at + 2 * n_fields])
    local products_at = fields_at + 2 * n_fields + 1
    ap = products_at + n_products

    local entity_key = keys[kp]
    kp = kp + 1
    local list_key
    if kind == ORDER then
      list_key = keys[kp]
      kp = kp + 1
    end

    local versions = keys[1 + kind]
    local ids = keys[6 + kind]
    local seen = tonumber(redis.call('HGET', versions, id) or '0')
    if tonumber(version) <= seen then
      skipped = skipped + 1
      notices[#notices + 1] = kind .. ':' .. id .. ':' .. string.format('%.0f', seen)
    else
      applied = applied + 1
      -- A billing's order before this event: its Hash exists iff the billing is live here.
      local old_order
      if kind == BILLING then
        old_order = redis.call('HGET', entity_key, 'order_id')
      end
      if action == 'deleted' then
        redis.call('DEL', entity_key)
        redis.call('SREM', ids, id)
        if kind == ORDER then
          redis.call('DEL', list_key)
          redis.call('SREM', keys[12], id)
        elseif kind == BILLING and old_order then
          billing_removed(keys, old_order)
        end
      else
        local fields = {}
        local new_order
        for i = 0, n_fields - 1 do
          local name, value = args[fields_at + 2 * i], args[fields_at + 2 * i + 1]
          fields[#fields + 1] = name
          fields[#fields + 1] = value
          if name == 'order_id' then new_order = value end
        end
        redis.call('HSET', entity_key, unpack(fields))
        redis.call('SADD', ids, id)
        if kind == ORDER then
          redis.call('DEL', list_key)
          if n_products > 0 then
            redis.call('RPUSH', list_key, unpack(args, products_at, products_at + n_products - 1))
          end
          if redis.call('HEXISTS', keys[14], id) == 1 then
            redis.call('SREM', keys[12], id)
          else
            redis.call('SADD', keys[12], id)
          end
        elseif kind == BILLING and old_order ~= new_order then
          if old_order then billing_removed(keys, old_order) end
          if new_order then billing_added(keys, new_order) end
        end
      end
      -- Recorded last: should a write above fail (a key of the wrong type, set by hand), the
      -- event is not marked applied and its retry re-applies it.
      redis.call('HSET', versions, id, version)
      notices[#notices + 1] = kind .. ':' .. id .. ':' .. version
    end
  end
  if args[1] == 'live' and #notices > 0 then
    redis.call('PUBLISH', args[4], table.concat(notices, ','))
  end
  return {0, applied, skipped}
end

redis.register_function('cache_apply', cache_apply)
