-- (The library's `#!lua name=` line and the shared lease check, lua/lease.lua, are put ahead
-- of this source when it is compiled in: see mailer.rs.)

-- The CRM mailer's write path. Which messages an event triggers, and the facts the event gives
-- them, are decided in Rust (projections/src/mailer.rs: `plan`); this Function does what must
-- be atomic with the outbox write:
--   - keep the directory (the latest version of each customer's address, each order's customer
--     and total, each product's name), updating a record iff the event's version is newer;
--   - fill in what a message lacks from it, or park the message until that record arrives
--     (a billing read before its order, an order before its customer), and route the parked
--     messages again when it does;
--   - write each message's facts to the outbox at most once (its id is new to the sent ids),
--     and count it for its customer.
--
-- FCALL crm_mail <n> <pause lease> <sent ids> <outbox> <sent per customer> <directory>
--   [<waiting Hash>...] (the keys the plans name, declared for a Redis Cluster; not read here)
--   ARGV 1..3 the runner's header (mode, token, lease ms), 4 and 5 the prefixes of the Hashes
--   of messages waiting for a customer and for an order (followed by its id), then one plan per
--   event, as JSON: {record?: {dir, id, v, ...}, flush?: <waiting key>, messages: [draft...]}.
--   Directory fields are `<dir>:<id>`.
--   The waiting Hashes are named from the prefixes here (a parked order's customer is read from
--   the directory); every one a batch would touch must be among the declared keys
--   (docs/adr/0006-one-slot-per-shop.md).
--
-- Returns {0, applied, skipped} (an event is applied if it changed the directory or wrote,
-- parked or released a message), {-1} while the mailer is paused, or {-3, key...} with
-- nothing written when the batch would park messages under keys the call did not declare (the
-- caller declares them and calls again).

local K, P

local function look(dir, id)
  local raw = redis.call('HGET', K[5], dir .. ':' .. id)
  if not raw then return nil end
  return cjson.decode(raw)
end

-- Returns whether the message was not already waiting there.
local function park(key, m)
  return redis.call('HSET', key, m.id, cjson.encode(m)) == 1
end

-- Returns whether the message was new.
local function send(m)
  if redis.call('SADD', K[2], m.id) == 0 then return false end
  local fields = {'msg_id', m.id, 'to', m.to, 'kind', m.kind, 'customer_id', m.customer_id,
    'event_id', m.event_id, 'name', m.name}
  if m.request_id then
    fields[#fields + 1] = 'request_id'
    fields[#fields + 1] = m.request_id
  end
  if m.order_id then
    fields[#fields + 1] = 'order_id'
    fields[#fields + 1] = m.order_id
  end
  if m.total then
    fields[#fields + 1] = 'total'
    fields[#fields + 1] = m.total
  end
  if m.items then
    local names = {}
    for i, p in ipairs(m.items) do
      local product = look('product', p)
      names[i] = product and product.name or p
    end
    fields[#fields + 1] = 'items'
    fields[#fields + 1] = cjson.encode(names)
  end
  redis.call('XADD', K[3], '*', unpack(fields))
  redis.call('HINCRBY', K[4], m.customer_id, 1)
  return true
end

-- Sends a message, or parks it until the record it lacks is known. Returns whether it wrote
-- or parked something (false for a message already sent or already waiting).
local function route(m)
  if redis.call('SISMEMBER', K[2], m.id) == 1 then return false end
  if not m.customer_id then
    local order = look('order', m.order_id)
    if not order then return park(P.order .. m.order_id, m) end
    m.customer_id = order.customer_id
    if not m.total then m.total = order.total end
  end
  if not m.to then
    local customer = look('customer', m.customer_id)
    if not customer then return park(P.customer .. m.customer_id, m) end
    m.to, m.name = customer.email, customer.name
  end
  send(m)
end

-- Routes again every message that waited for a record; returns whether there were any.
local function flush(key)
  local waiting = redis.call('HGETALL', key)
  if #waiting == 0 then return false end
  redis.call('DEL', key)
  for i = 2, #waiting, 2 do route(cjson.decode(waiting[i])) end
  return true
end

-- Stores a directory record iff it is newer than the one kept; returns whether it did.
local function keep(record)
  local current = look(record.dir, record.id)
  if current and current.v >= record.v then return false end
  redis.call('HSET', K[5], record.dir .. ':' .. record.id, cjson.encode(record))
  return true
end

-- The waiting Hashes a batch may park messages under that the call did not declare: those of
-- the customers of the orders its messages lack a customer for (from the directory, or from an
-- order record the batch itself brings), found before anything is written.
local function undeclared(plans)
  local declared, missing, seen = {}, {}, {}
  for _, k in ipairs(K) do declared[k] = true end
  local function need(k)
    if not declared[k] and not seen[k] then
      seen[k] = true
      missing[#missing + 1] = k
    end
  end
  local brought = {}
  for _, plan in ipairs(plans) do
    local r = plan.record
    if r and r.dir == 'order' then
      brought[r.id] = brought[r.id] or {}
      brought[r.id][#brought[r.id] + 1] = r.customer_id
    end
  end
  local function customers_of(m)
    if m.customer_id then
      need(P.customer .. m.customer_id)
      return
    end
    if not m.order_id then return end
    need(P.order .. m.order_id)
    local order = look('order', m.order_id)
    if order then need(P.customer .. order.customer_id) end
    for _, c in ipairs(brought[m.order_id] or {}) do need(P.customer .. c) end
  end
  for _, plan in ipairs(plans) do
    for _, m in ipairs(plan.messages) do customers_of(m) end
    if plan.flush then
      local waiting = redis.call('HGETALL', plan.flush)
      for i = 2, #waiting, 2 do customers_of(cjson.decode(waiting[i])) end
    end
  end
  return missing
end

local function crm_mail(keys, args)
  local ok, code = lease_ok(keys, args)
  if not ok then
    return {code}
  end
  K = keys
  P = {customer = args[4], order = args[5]}
  local plans = {}
  for i = 6, #args do plans[#plans + 1] = cjson.decode(args[i]) end
  local missing = undeclared(plans)
  if #missing > 0 then
    return {-3, unpack(missing)}
  end
  local applied, skipped = 0, 0
  for _, plan in ipairs(plans) do
    local changed = false
    if plan.record then changed = keep(plan.record) end
    for _, m in ipairs(plan.messages) do
      if route(m) then changed = true end
    end
    if plan.flush and flush(plan.flush) then changed = true end
    if changed then
      applied = applied + 1
    else
      skipped = skipped + 1
    end
  end
  return {0, applied, skipped}
end

redis.register_function{
  function_name = 'crm_mail',
  callback = crm_mail,
}
