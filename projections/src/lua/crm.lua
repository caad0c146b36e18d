-- (The library's `#!lua name=` line and the shared lease check, lua/lease.lua, are put ahead
-- of this source when it is compiled in: see crm.rs.)

-- The CRM view's one write path: a batch of events applied in one atomic step. What each event
-- changes is decided in Rust (projections/src/crm.rs: `plan`) and arrives here as a list of
-- upserts; this Function only checks versions and applies them, so it knows no rule of the CRM.
--
-- Per event, a plan (JSON):
--   guard  {key, id, v}: the event's upserts in `ops` apply iff v is above the version recorded
--          for id in the Hash key, which is then recorded (after the writes, so that a call
--          failing midway does not leave the event marked applied);
--   ops    upserts applied iff the guard passes;
--   always upserts applied whatever the version (e.g. a maximum, which is order-independent).
-- Upserts:
--   {op = 'hset', key, fields}            HSET
--   {op = 'sadd' | 'srem', key, member}   SADD / SREM
--   {op = 'count', record, always, linked, unlinked}
--          a record's contribution to counters: `always`, plus `linked` while the record has
--          links, else `unlinked` (each a JSON list of deltas, kept verbatim in the record).
--          The contribution the record made is taken back and the new one added.
--   {op = 'link', links, id, to, record_prefix}
--          moves id's link (links: Hash id -> target) to `to` (absent: no link); the records
--          `<record_prefix><target>` it leaves and joins gain or lose one link, switching their
--          contribution between `unlinked` and `linked`.
--   {op = 'max', ranks, slot, rank, key, fields}
--          HSET key fields iff rank is above the rank recorded for slot in the Hash ranks
--          (ranks are fixed-width text, so they compare as strings).
-- A delta is {key, field, n} or {key, field, n, set, member}: HINCRBY key field n, the field
-- removed at zero so that a field exists iff it is non-zero; with a set, member is then in the
-- set iff the field exists.
--
-- Key names arrive in the plans (and are read back from records and links): which records an
-- event touches can depend on what a record holds. The caller also declares every name a plan
-- holds as KEYS; the ones read back are not known to it. Every name is built in Rust in the
-- shop's namespace, so all of them share one hash slot (docs/adr/0006-one-slot-per-shop.md).
--
-- The view converges whatever order the events arrive in: entities apply iff newer (events
-- carry the whole entity), contributions are replaced, not added, and maxima do not depend on
-- order. So a replay in ID order (a rebuild) yields the same view as live consumers that saw the
-- streams in any order, any number of times.
--
-- FCALL crm_apply <n> <pause lease> [<key>...] <mode> <token> <lease ms> <plan>...
--   (the keys after the lease are those the plans name, declared for a Redis Cluster; the
--   Function reads the names from the plans)
-- Returns {0, applied, skipped}, {-1} when a rebuild pauses live batches, {-2} when a
-- rebuild's lease is no longer held by its token, or {-3, key...} with nothing written when
-- the batch would touch keys the call did not declare (the caller declares them and calls
-- again).

local function int(n)
  return string.format('%.0f', n)
end

local function apply_delta(d, sign)
  local key, field, n = d[1], d[2], d[3] * sign
  if n ~= 0 and redis.call('HINCRBY', key, field, int(n)) == 0 then
    redis.call('HDEL', key, field)
  end
  if d[4] then
    local present = redis.call('HEXISTS', key, field) == 1
    redis.call(present and 'SADD' or 'SREM', d[4], d[5])
  end
end

local function contribute(json, sign)
  if not json then return end
  for _, d in ipairs(cjson.decode(json)) do apply_delta(d, sign) end
end

-- Adds (sign 1) or takes back (sign -1) what a record contributes, given its links.
local function record_contribution(record, sign)
  local r = redis.call('HMGET', record, 'links', 'always', 'linked', 'unlinked')
  contribute(r[2], sign)
  if (tonumber(r[1]) or 0) > 0 then contribute(r[3], sign) else contribute(r[4], sign) end
end

local function relink(record, delta)
  record_contribution(record, -1)
  if redis.call('HINCRBY', record, 'links', delta) == 0 then
    redis.call('HDEL', record, 'links')
  end
  record_contribution(record, 1)
end

local function hset(key, fields)
  local args = {}
  for k, v in pairs(fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call('HSET', key, unpack(args))
end

local upserts = {
  hset = function(op) hset(op.key, op.fields) end,
  sadd = function(op) redis.call('SADD', op.key, op.member) end,
  srem = function(op) redis.call('SREM', op.key, op.member) end,
  count = function(op)
    record_contribution(op.record, -1)
    redis.call('HSET', op.record, 'always', op.always, 'linked', op.linked,
      'unlinked', op.unlinked)
    record_contribution(op.record, 1)
  end,
  link = function(op)
    local old = redis.call('HGET', op.links, op.id)
    local new = op.to or false
    if old == new then return end
    if old then
      redis.call('HDEL', op.links, op.id)
      relink(op.record_prefix .. old, -1)
    end
    if new then
      redis.call('HSET', op.links, op.id, new)
      relink(op.record_prefix .. new, 1)
    end
  end,
  max = function(op)
    local current = redis.call('HGET', op.ranks, op.slot)
    if current and current >= op.rank then return end
    redis.call('HSET', op.ranks, op.slot, op.rank)
    hset(op.key, op.fields)
  end,
}

local function run(ops)
  for _, op in ipairs(ops or {}) do
    local upsert = upserts[op.op]
    if not upsert then
      error('crm_apply: unknown upsert ' .. tostring(op.op))
    end
    upsert(op)
  end
end

-- The keys a batch would touch that the call did not declare, found before anything is written:
-- names read back from links and from records' stored contributions. On a Redis Cluster only
-- the declared keys are sure to be on this node together while a slot moves, so a name read
-- from an undeclared key is not trusted: the caller declares what is returned and calls again,
-- and the next call reads one step further.
local function undeclared(keys, plans)
  local declared, missing, seen = {}, {}, {}
  for _, k in ipairs(keys) do declared[k] = true end
  local function need(k)
    if declared[k] then return true end
    if not seen[k] then
      seen[k] = true
      missing[#missing + 1] = k
    end
    return false
  end
  local function record_keys(record)
    if not need(record) then return end
    local r = redis.call('HMGET', record, 'always', 'linked', 'unlinked')
    for i = 1, 3 do
      for _, d in ipairs(r[i] and cjson.decode(r[i]) or {}) do
        need(d[1])
        if d[4] then need(d[4]) end
      end
    end
  end
  for _, plan in ipairs(plans) do
    for _, list in ipairs({plan.ops, plan.always or {}}) do
      for _, op in ipairs(list) do
        if op.op == 'count' then
          record_keys(op.record)
        elseif op.op == 'link' then
          if need(op.links) then
            local old = redis.call('HGET', op.links, op.id)
            if old then record_keys(op.record_prefix .. old) end
          end
          if op.to then record_keys(op.record_prefix .. op.to) end
        end
      end
    end
  end
  return missing
end

local function crm_apply(keys, args)
  local ok, code = lease_ok(keys, args)
  if not ok then
    return {code}
  end
  local plans = {}
  for i = 4, #args do plans[#plans + 1] = cjson.decode(args[i]) end
  local missing = undeclared(keys, plans)
  if #missing > 0 then
    return {-3, unpack(missing)}
  end
  local applied, skipped = 0, 0
  for _, plan in ipairs(plans) do
    local g = plan.guard
    local seen = tonumber(redis.call('HGET', g.key, g.id) or '0')
    if g.v > seen then
      run(plan.ops)
      redis.call('HSET', g.key, g.id, int(g.v))
      applied = applied + 1
    else
      skipped = skipped + 1
    end
    run(plan.always)
  end
  return {0, applied, skipped}
end

redis.register_function{
  function_name = 'crm_apply',
  callback = crm_apply,
}
