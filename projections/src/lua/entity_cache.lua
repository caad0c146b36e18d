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
--   KEYS[15..19]   the live entities' JSON documents per kind, same order
--   KEYS[20..]     per event, in order: the entity Hash, then for an order its product List
--   ARGV[1..3]     mode ('live' | 'rebuild'), rebuild token, lease in ms
--   ARGV[4]        the channel of applied-versions notices
--   ARGV[5..]      per event: kind (1..5, order above), action ('created'|'updated'|'deleted'),
--                  id, version, the entity's JSON document, n_fields, n_fields x (field,
--                  value), n_products, product ids...
--
-- In live mode, publishes on ARGV[4] `<kind>:<id>:<version>,...`: the version now applied for
-- each entity of the batch, once per entity (gateways wake their read-your-writes waiters with it).
--
-- Returns {0, applied, skipped}, or {-1} when a rebuild pauses live batches, or {-2} when a
-- rebuild's lease is no longer held by its token.
--
-- Each entity is written once per call, at the last version the batch brings for it (see
-- cache_apply). Like any Redis script, a call that fails midway keeps the writes it made before
-- the failure; each entity's version is recorded after its writes, so the entities before a
-- failing one are complete (and skipped when the runner retries the events one by one) and the
-- failing one is not marked applied.

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

-- Applies one event's state (the entity as of `e.version`) over what the cache holds.
local function apply_state(keys, args, e)
  -- A billing's order before this event: its Hash exists iff the billing is live here.
  local old_order
  if e.kind == BILLING then
    old_order = redis.call('HGET', e.entity_key, 'order_id')
  end
  local ids = keys[6 + e.kind]
  local documents = keys[14 + e.kind]
  if e.action == 'deleted' then
    redis.call('DEL', e.entity_key)
    redis.call('SREM', ids, e.id)
    redis.call('HDEL', documents, e.id)
    if e.kind == ORDER then
      redis.call('DEL', e.list_key)
      redis.call('SREM', keys[12], e.id)
    elseif e.kind == BILLING and old_order then
      billing_removed(keys, old_order)
    end
    return
  end
  local fields = {}
  local new_order
  for i = 0, e.n_fields - 1 do
    local name, value = args[e.fields_at + 2 * i], args[e.fields_at + 2 * i + 1]
    fields[#fields + 1] = name
    fields[#fields + 1] = value
    if name == 'order_id' then new_order = value end
  end
  redis.call('HSET', e.entity_key, unpack(fields))
  redis.call('SADD', ids, e.id)
  redis.call('HSET', documents, e.id, args[e.document_at])
  if e.kind == ORDER then
    redis.call('DEL', e.list_key)
    if e.n_products > 0 then
      redis.call('RPUSH', e.list_key, unpack(args, e.products_at, e.products_at + e.n_products - 1))
    end
    if redis.call('HEXISTS', keys[14], e.id) == 1 then
      redis.call('SREM', keys[12], e.id)
    else
      redis.call('SADD', keys[12], e.id)
    end
  elseif e.kind == BILLING and old_order ~= new_order then
    if old_order then billing_removed(keys, old_order) end
    if new_order then billing_added(keys, new_order) end
  end
end

local function cache_apply(keys, args)
  local ok, code = lease_ok(keys, args)
  if not ok then
    return {code}
  end
  -- First pass, no writes: read the events, and for each entity walk its events in batch order
  -- as if applying them one by one (an event applies iff its version is above the one applied
  -- so far), to count applied and skipped exactly as one-by-one would and to find the version
  -- the entity ends at. Because the state is the whole entity and every write below compares
  -- with what the cache holds (a billing's old order, an order's billings), applying only that
  -- last version gives the same cache as applying each in turn, with one write per entity.
  local applied, skipped = 0, 0
  local entities, order = {}, {}
  local kp, ap = 20, 5
  while ap <= #args do
    local e = {kind = tonumber(args[ap]), action = args[ap + 1], id = args[ap + 2],
      version = tonumber(args[ap + 3]), version_text = args[ap + 3], document_at = ap + 4,
      n_fields = tonumber(args[ap + 5]), fields_at = ap + 6}
    e.n_products = tonumber(args[e.fields_at + 2 * e.n_fields])
    e.products_at = e.fields_at + 2 * e.n_fields + 1
    ap = e.products_at + e.n_products
    e.entity_key = keys[kp]
    kp = kp + 1
    if e.kind == ORDER then
      e.list_key = keys[kp]
      kp = kp + 1
    end
    local slot = e.kind .. ':' .. e.id
    local entity = entities[slot]
    if not entity then
      local versions = keys[1 + e.kind]
      local seen = tonumber(redis.call('HGET', versions, e.id) or '0')
      entity = {versions = versions, seen = seen, at = seen}
      entities[slot] = entity
      order[#order + 1] = slot
    end
    if e.version > entity.at then
      applied = applied + 1
      entity.at = e.version
      entity.last = e
    else
      skipped = skipped + 1
    end
  end

  local notices = {}
  for _, slot in ipairs(order) do
    local entity = entities[slot]
    if entity.last then
      apply_state(keys, args, entity.last)
      -- Recorded last: should a write above fail (a key of the wrong type, set by hand), the
      -- event is not marked applied and its retry re-applies it.
      redis.call('HSET', entity.versions, entity.last.id, entity.last.version_text)
    end
    notices[#notices + 1] = slot .. ':' .. string.format('%.0f', entity.at)
  end
  if args[1] == 'live' and #notices > 0 then
    redis.call('PUBLISH', args[4], table.concat(notices, ','))
  end
  return {0, applied, skipped}
end

redis.register_function('cache_apply', cache_apply)
