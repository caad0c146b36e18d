-- (The library's `#!lua name=` line and the shared lease check, lua/lease.lua, are put ahead
-- of this source when it is compiled in: see crm.rs / entity_cache.rs.)

-- The CRM's one write path. A batch of events is applied in one atomic step that
--   1. updates the CRM view (per-customer Hashes, segment Sets, the CRM's copies of orders,
--      billings and product names) and the versions applied, and
--   2. in live mode only, decides the customer messages those events trigger and writes each
--      one's facts to the outbox at most once (the mailer); the message service renders the
--      text (projections/src/message_text.rs).
--
-- The view converges whatever order the events arrive in: each entity is applied iff its version
-- is above the one applied (events carry the whole entity), an order's contribution to its
-- customer's counters is taken back and re-added whenever the order or its billings change, the
-- last order time is a maximum. So a replay in ID order (a rebuild) yields the same view as live
-- consumers that saw the streams in any order, any number of times.
--
-- Messages are triggered per event, not per version: a `created` event that arrives after a
-- later version of its entity still sends its message. Each message has a deterministic id
-- (`<event_id>:<kind>`); the mailer writes it to the outbox only if its id is new to
-- `crm:mail:sent_ids`, which a rebuild never wipes. A message whose address is not known yet
-- (an order seen before its customer, a billing before its order) waits in a Hash keyed by what
-- it waits for, and goes out when that entity's event is processed live.
--
-- FCALL crm_apply <numkeys> <keys...> <args...>
--   KEYS  1 pause lease, 2 sent ids, 3 outbox, 4..7 segments (all, active, deleted, unbilled),
--         8..11 applied versions (customer, product, order, billing), 12 product names,
--         13 billing -> order
--   ARGV  1 mode ('live' | 'rebuild'), 2 rebuild token, 3 lease ms,
--         4..8 key prefixes: customer, customer products, order, waiting for customer,
--                waiting for order,
--         then per event 10 values: kind, action, entry id, event id, version, id, a, b, c,
--           request id (empty when the event has none), where
--           customer: a name, b email; product: a name;
--           order: a customer id, b total, c product ids separated by spaces;
--           billing: a order id.
--   Keys under a prefix are the prefix followed by an id (standalone Redis, like the store).
--
-- Returns {0, applied, skipped}, {-1} when a rebuild pauses live batches, or {-2} when a
-- rebuild's lease is no longer held by its token. Like any Redis script, a call that fails midway
-- keeps the writes made before the failure (see `record`).

local K, P, live

local function int(n)
  return string.format('%.0f', n)
end

-- Adds delta to a counter field, removing the field at zero so that a field exists iff it is
-- non-zero: the view's layout then depends only on its values, not on the path taken.
local function hincr(key, field, delta)
  if delta == 0 then return end
  if redis.call('HINCRBY', key, field, int(delta)) == 0 then
    redis.call('HDEL', key, field)
  end
end

-- Is entry ID a later than b (`<ms>-<seq>`)?
local function later(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams > bms end
  return tonumber(aseq) > tonumber(bseq)
end


-- ------------------------------------------------------------------------------------------
-- View

local function order_record(order_id)
  local r = redis.call('HMGET', P.order .. order_id, 'customer_id', 'total', 'live', 'products', 'billings')
  return {
    customer = r[1] or nil,
    total = tonumber(r[2]) or 0,
    live = r[3] == '1',
    products = r[4] or '',
    billings = tonumber(r[5]) or 0,
  }
end

-- Adds (sign 1) or takes back (sign -1) what an order counts for its customer.
local function contribute(rec, sign)
  if not rec.customer then return end
  local ck = P.customer .. rec.customer
  local billed = rec.billings > 0
  if rec.live then
    hincr(ck, 'orders', sign)
    hincr(ck, 'amount_ordered', sign * rec.total)
    if not billed then hincr(ck, 'unbilled_orders', sign) end
    local units, per_product = 0, {}
    for p in string.gmatch(rec.products, '%S+') do
      per_product[p] = (per_product[p] or 0) + 1
      units = units + 1
    end
    hincr(ck, 'units', sign * units)
    local pk = P.products .. rec.customer
    for p, n in pairs(per_product) do hincr(pk, p, sign * n) end
  end
  if billed then hincr(ck, 'amount_billed', sign * rec.total) end
end

local function refresh_unbilled(customer)
  if not customer then return end
  if redis.call('HEXISTS', P.customer .. customer, 'unbilled_orders') == 1 then
    redis.call('SADD', K[7], customer)
  else
    redis.call('SREM', K[7], customer)
  end
end

local function change_billings(order_id, delta)
  local rec = order_record(order_id)
  contribute(rec, -1)
  rec.billings = rec.billings + delta
  hincr(P.order .. order_id, 'billings', delta)
  contribute(rec, 1)
  refresh_unbilled(rec.customer)
end

-- Whether an event is above the entity's applied version (so its state is to be applied).
local function newer(versions_key, ev)
  local seen = tonumber(redis.call('HGET', versions_key, ev.id) or '0')
  return tonumber(ev.version) > seen
end

-- Records an event's version as applied: after its writes, so that a call failing midway (a key
-- of the wrong type, set by hand) does not leave the event marked applied.
local function record(versions_key, ev)
  redis.call('HSET', versions_key, ev.id, ev.version)
end

-- ------------------------------------------------------------------------------------------
-- Mailer (live mode only)

-- A message carries its facts, not its text: the message service renders the wording in Rust
-- (projections/src/message_text.rs). It also carries the event (and the request, when known)
-- that caused it, so that delivery can be traced back to the request. `facts` is a flat list of
-- field, value pairs.
local function send(msg_id, customer, to, kind, event_id, request_id, facts)
  if redis.call('SADD', K[2], msg_id) == 0 then return end
  local fields = {'msg_id', msg_id, 'to', to, 'kind', kind, 'customer_id', customer,
    'event_id', event_id}
  if request_id and request_id ~= '' then
    fields[#fields + 1] = 'request_id'
    fields[#fields + 1] = request_id
  end
  for _, v in ipairs(facts) do fields[#fields + 1] = v end
  redis.call('XADD', K[3], '*', unpack(fields))
  redis.call('HINCRBY', P.customer .. customer, 'messages_sent', 1)
end

-- The facts of a message about an order: the names of the units ordered (from the CRM's copy
-- of product names, kept after deletes), or the amount.
local function order_facts(m, name)
  local facts = {'name', name, 'order_id', m.order_id}
  if m.kind == 'order_confirmation' then
    local items = {}
    for p in string.gmatch(m.products or '', '%S+') do
      items[#items + 1] = redis.call('HGET', K[12], p) or p
    end
    facts[#facts + 1] = 'items'
    facts[#facts + 1] = cjson.encode(items)
  else
    facts[#facts + 1] = 'total'
    facts[#facts + 1] = tostring(m.total)
  end
  return facts
end

-- Sends a message to its customer, or parks it until the customer's address is known.
local function to_customer(m)
  local c = redis.call('HMGET', P.customer .. m.customer_id, 'name', 'email')
  if not c[2] then
    redis.call('HSET', P.waiting_customer .. m.customer_id, m.id, cjson.encode(m))
    return
  end
  send(m.id, m.customer_id, c[2], m.kind, m.event_id, m.request_id, order_facts(m, c[1]))
end

-- Routes a message about an order: a receipt first needs its order's customer and total.
local function route(m)
  if redis.call('SISMEMBER', K[2], m.id) == 1 then return end
  if not m.customer_id then
    local r = redis.call('HMGET', P.order .. m.order_id, 'customer_id', 'total')
    if not r[1] then
      redis.call('HSET', P.waiting_order .. m.order_id, m.id, cjson.encode(m))
      return
    end
    m.customer_id, m.total = r[1], r[2]
  end
  to_customer(m)
end

local function flush(key)
  local waiting = redis.call('HGETALL', key)
  if #waiting == 0 then return end
  redis.call('DEL', key)
  for i = 2, #waiting, 2 do route(cjson.decode(waiting[i])) end
end

-- ------------------------------------------------------------------------------------------
-- Events

local function customer_event(ev)
  local applied = newer(K[8], ev)
  local deleted = ev.action == 'deleted'
  if applied then
    redis.call('HSET', P.customer .. ev.id, 'id', ev.id, 'name', ev.a, 'email', ev.b,
      'status', deleted and 'deleted' or 'active')
    redis.call('SADD', K[4], ev.id)
    redis.call(deleted and 'SREM' or 'SADD', K[5], ev.id)
    redis.call(deleted and 'SADD' or 'SREM', K[6], ev.id)
    record(K[8], ev)
  end
  if live then
    if ev.action == 'created' then
      send(ev.event_id .. ':welcome', ev.id, ev.b, 'welcome', ev.event_id, ev.request_id,
        {'name', ev.a})
    elseif deleted then
      send(ev.event_id .. ':goodbye', ev.id, ev.b, 'goodbye', ev.event_id, ev.request_id,
        {'name', ev.a})
    end
    flush(P.waiting_customer .. ev.id)
  end
  return applied
end

local function product_event(ev)
  local applied = newer(K[9], ev)
  if applied then
    -- Kept after a delete: old orders still name the product.
    redis.call('HSET', K[12], ev.id, ev.a)
    record(K[9], ev)
  end
  return applied
end

local function order_event(ev)
  local applied = newer(K[10], ev)
  if applied then
    local old = order_record(ev.id)
    local new = {
      customer = ev.a,
      total = tonumber(ev.b) or 0,
      live = ev.action ~= 'deleted',
      products = ev.c,
      billings = old.billings,
    }
    contribute(old, -1)
    redis.call('HSET', P.order .. ev.id, 'customer_id', ev.a, 'total', ev.b,
      'live', new.live and '1' or '0', 'products', ev.c)
    contribute(new, 1)
    refresh_unbilled(old.customer)
    if old.customer ~= new.customer then refresh_unbilled(new.customer) end
    record(K[10], ev)
  end
  if ev.action == 'created' then
    -- The last order placed: a maximum over created events, so their order does not matter.
    local ck = P.customer .. ev.a
    local last = redis.call('HGET', ck, 'last_order_entry')
    if not last or later(ev.entry_id, last) then
      redis.call('HSET', ck, 'last_order_entry', ev.entry_id, 'last_order_id', ev.id,
        'last_order_at', string.match(ev.entry_id, '^(%d+)'))
    end
  end
  if live then
    if ev.action == 'created' then
      local base = {event_id = ev.event_id, order_id = ev.id, customer_id = ev.a, total = ev.b,
        request_id = ev.request_id}
      local confirmation = {kind = 'order_confirmation', id = ev.event_id .. ':order_confirmation',
        products = ev.c}
      local request = {kind = 'payment_request', id = ev.event_id .. ':payment_request'}
      for k, v in pairs(base) do
        confirmation[k] = v
        request[k] = v
      end
      route(confirmation)
      route(request)
    end
    flush(P.waiting_order .. ev.id)
  end
  return applied
end

local function billing_event(ev)
  local applied = newer(K[11], ev)
  if applied then
    local old_order = redis.call('HGET', K[13], ev.id)
    local new_order = ev.action ~= 'deleted' and ev.a or false
    if old_order ~= new_order then
      if old_order then
        redis.call('HDEL', K[13], ev.id)
        change_billings(old_order, -1)
      end
      if new_order then
        redis.call('HSET', K[13], ev.id, new_order)
        change_billings(new_order, 1)
      end
    end
    record(K[11], ev)
  end
  if live and ev.action == 'created' then
    route({kind = 'receipt', id = ev.event_id .. ':receipt', event_id = ev.event_id,
      order_id = ev.a, request_id = ev.request_id})
  end
  return applied
end

local handlers = {
  customer = customer_event,
  product = product_event,
  order = order_event,
  billing = billing_event,
}

local function crm_apply(keys, args)
  local ok, code = lease_ok(keys, args)
  if not ok then
    return {code}
  end
  K = keys
  live = args[1] == 'live'
  P = {
    customer = args[4],
    products = args[5],
    order = args[6],
    waiting_customer = args[7],
    waiting_order = args[8],
  }
  local applied, skipped = 0, 0
  for i = 9, #args, 10 do
    local ev = {
      kind = args[i], action = args[i + 1], entry_id = args[i + 2], event_id = args[i + 3],
      version = args[i + 4], id = args[i + 5], a = args[i + 6], b = args[i + 7], c = args[i + 8],
      request_id = args[i + 9],
    }
    local handler = handlers[ev.kind]
    if not handler then
      return redis.error_reply('crm_apply: unknown kind ' .. tostring(ev.kind))
    end
    if handler(ev) then applied = applied + 1 else skipped = skipped + 1 end
  end
  return {0, applied, skipped}
end

redis.register_function{
  function_name = 'crm_apply',
  callback = crm_apply,
  flags = {'no-cluster'},
}
