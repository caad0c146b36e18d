#!lua name=ordershop_store

-- The event store's one write path: a guarded, atomic, multi-entity append with store-wide IDs.
--
-- FCALL append_guarded <numkeys> <keys...> <args...>
--   KEYS[1]       the clock key (last ID issued, `<ms>-<seq>`)
--   KEYS[2..]     every other key the call touches (heads, unique indexes, streams)
--   ARGV          a flat list, read left to right:
--     n_idem (0 or 1), then n_idem x (key index, fingerprint, response, ttl ms)
--     n_meta,    then n_meta    x (field name, value): extra fields written on every entry
--     n_expect,  then n_expect  x (head key index, entity id, expected version)
--     n_claims,  then n_claims  x (unique key index, value, owner id, 'claim' | 'release')
--     n_events,  then n_events  x (stream key index, head key index, entity id, event id,
--                                  version, entity JSON, '1' when the event deletes the entity)
--     n_rids,    then n_rids    x the request id of event i, or '' (one append may carry the
--                                  events of several requests). Optional, and last, so that a
--                                  caller or a library of the build before reads the rest alike
--   Key indexes point into KEYS. Nothing is written unless every check passes.
--
-- Returns {1, id...} with one new entry ID per event, or
--         {2, response}           when the idempotency key holds this request's response, or
--         {-2}                    when it holds another request's (nothing is written), or
--         {0, i, actual version}  when expectation i (1-based) failed, or
--         {-1, i, holder id}      when claim i failed (the value is held by another entity).

local function head_version(head)
  if not head then return 0 end
  return tonumber(string.match(head, '^(%d+)'))
end

-- The next ID: the server's microsecond clock, or one past the last ID issued when the clock
-- has not moved on (same microsecond, or a clock that stepped back).
local function next_id(clock_key)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = tonumber(t[2]) % 1000
  local last = redis.call('GET', clock_key)
  if last then
    local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
    lms = tonumber(lms)
    lseq = tonumber(lseq)
    if ms < lms or (ms == lms and seq <= lseq) then
      ms = lms
      seq = lseq + 1
    end
  end
  return ms, seq
end

-- How far ahead of the server's clock an entry written by hand may sit for the store to append
-- past it (further, it would pin every later ID there), and the largest sequence part Lua's
-- numbers hold exactly.
local MAX_AHEAD_MS = 24 * 3600 * 1000
local MAX_EXACT = 9007199254740991

-- XADD with the ID (ms, seq). An entry written to the stream without this Function (by hand,
-- or after the clock key was lost) may sit at or above it; XADD then refuses the ID, and the
-- append goes on past that stream's top instead of failing halfway (the events already written
-- keep their lower IDs, so the append's IDs still increase). Checking only on refusal spares
-- every append a read of each stream's top. Returns the ID used, as (ms, seq, text), or, when
-- the top is out of reach (beyond what an ID can follow, or far in the future), nil and the
-- top's ID: the caller then takes back what it wrote and refuses the append.
local function xadd(stream, ms, seq, fields)
  local entry_id = string.format('%.0f-%.0f', ms, seq)
  local reply = redis.pcall('XADD', stream, entry_id, unpack(fields))
  if type(reply) ~= 'table' or not reply.err then
    return ms, seq, entry_id
  end
  -- The stream's last ID: its top entry's, or higher when entries above were deleted (XADD
  -- never goes below it either way).
  local info = redis.call('XINFO', 'STREAM', stream)
  local top
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then top = info[i + 1] end
  end
  if not top then
    return error(reply.err)
  end
  local top_ms, top_seq = string.match(top, '^(%d+)-(%d+)$')
  local tms, tseq = tonumber(top_ms), tonumber(top_seq)
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000
  if #top_ms > 15 or #top_seq > 15 or tseq >= MAX_EXACT or tms > now_ms + MAX_AHEAD_MS then
    return nil, nil, top
  end
  if ms > tms or (ms == tms and seq > tseq) then
    return error(reply.err)
  end
  ms, seq = tms, tseq + 1
  entry_id = string.format('%.0f-%.0f', ms, seq)
  redis.call('XADD', stream, entry_id, unpack(fields))
  return ms, seq, entry_id
end

local function append_guarded(keys, args)
  local pos = 1
  local function take()
    local v = args[pos]
    pos = pos + 1
    return v
  end

  local idem_key, idem_value, idem_ttl
  if tonumber(take()) == 1 then
    idem_key = keys[tonumber(take())]
    local fingerprint = take()
    idem_value = fingerprint .. '\n' .. take()
    idem_ttl = take()
    local done = redis.call('GET', idem_key)
    if done then
      local nl = string.find(done, '\n', 1, true)
      if nl and string.sub(done, 1, nl - 1) == fingerprint then
        -- A write (the key's own expiry, unchanged) so that a WAIT after this call waits for
        -- the replication of everything before it, the first answer's events included.
        local ttl = redis.call('PTTL', idem_key)
        if ttl > 0 then
          redis.call('PEXPIRE', idem_key, ttl)
        end
        return {2, string.sub(done, nl + 1)}
      end
      return {-2}
    end
  end

  local meta = {}
  local n_meta = tonumber(take())
  for i = 1, n_meta * 2 do
    meta[i] = take()
  end

  local n_expect = tonumber(take())
  for i = 1, n_expect do
    local key = keys[tonumber(take())]
    local id = take()
    local expected = tonumber(take())
    local actual = head_version(redis.call('HGET', key, id))
    if actual ~= expected then
      return {0, i, actual}
    end
  end

  local n_claims = tonumber(take())
  local claims = {}
  for i = 1, n_claims do
    local key = keys[tonumber(take())]
    local value = take()
    local owner = take()
    local mode = take()
    local holder = redis.call('HGET', key, value)
    if mode == 'claim' and holder and holder ~= owner then
      return {-1, i, holder}
    end
    claims[i] = {key, value, owner, mode, holder}
  end

  local n_events = tonumber(take())
  local ms, seq = next_id(keys[1])
  local rids = pos + n_events * 7
  local n_rids = tonumber(args[rids]) or 0
  local ids = {1}
  local heads = {}
  local written = {}
  for i = 1, n_events do
    local stream = keys[tonumber(take())]
    local head_key = keys[tonumber(take())]
    local id = take()
    local event_id = take()
    local version = take()
    local entity = take()
    local deleted = take()
    local fields = {'event_id', event_id, 'entity', entity, 'version', version}
    if i <= n_rids and args[rids + i] ~= '' then
      fields[#fields + 1] = 'request_id'
      fields[#fields + 1] = args[rids + i]
    end
    for _, v in ipairs(meta) do fields[#fields + 1] = v end
    if i > 1 then seq = seq + 1 end
    local used_ms, used_seq, entry_id = xadd(stream, ms, seq, fields)
    if not used_ms then
      -- A stream's top is out of reach: take back this append's entries (no one has seen them:
      -- a Function runs alone), keep the clock past them (XADD never goes below a stream's
      -- highest ID, deleted or not), and refuse, naming the stream and the entry.
      for _, w in ipairs(written) do
        redis.call('XDEL', w[1], w[2])
      end
      if #written > 0 then
        redis.call('SET', keys[1], string.format('%.0f-%.0f', ms, seq))
      end
      return {-3, stream, entry_id}
    end
    ms, seq = used_ms, used_seq
    written[#written + 1] = {stream, entry_id}
    if deleted == '1' then
      heads[#heads + 1] = {head_key, id, version .. ':'}
    else
      heads[#heads + 1] = {head_key, id, version .. ':' .. entity}
    end
    ids[i + 1] = entry_id
  end
  -- The heads only once every entry is in its stream.
  for _, h in ipairs(heads) do
    redis.call('HSET', h[1], h[2], h[3])
  end
  if n_events > 0 then
    redis.call('SET', keys[1], string.format('%.0f-%.0f', ms, seq))
  end

  for i = 1, n_claims do
    local c = claims[i]
    if c[4] == 'claim' then
      redis.call('HSET', c[1], c[2], c[3])
    elseif c[5] == c[3] then
      redis.call('HDEL', c[1], c[2])
    end
  end
  if idem_key then
    redis.call('SET', idem_key, idem_value, 'PX', idem_ttl)
  end
  return ids
end

redis.register_function('append_guarded', append_guarded)

-- The heads of the entities a unique index names, in one step (a command's read of, say, the
-- stock records of the products it orders, which would otherwise take two round trips).
--
-- FCALL heads_by_unique 2 <index key> <heads key> <value...>
-- Returns, per value in order, two items: the owner id and the owner's head, each nil when
-- absent.
local function heads_by_unique(keys, args)
  local owners = redis.call('HMGET', keys[1], unpack(args))
  local found = {}
  for _, owner in ipairs(owners) do
    if owner then found[#found + 1] = owner end
  end
  local heads = {}
  if #found > 0 then heads = redis.call('HMGET', keys[2], unpack(found)) end
  local out, j = {}, 1
  for i = 1, #args do
    local owner = owners[i]
    if owner then
      out[2 * i - 1] = owner
      out[2 * i] = heads[j]
      j = j + 1
    else
      out[2 * i - 1] = false
      out[2 * i] = false
    end
  end
  return out
end

redis.register_function{
  function_name = 'heads_by_unique',
  callback = heads_by_unique,
  flags = {'no-writes'},
}
