#!lua name=ordershop_runner

-- Helpers of the consumer-group runner, and of the operator's rebuild and dead-letter actions
-- (ordershop-operations), that must be atomic.
--
-- FCALL lease_release 1 <pause key> <token>
--   Ends a rebuild's pause lease, but only if it still holds it: a rebuild whose lease expired
--   (and was taken by another rebuild) must not end the other's pause. Returns 1 if released.

local function lease_release(keys, args)
  if redis.call('GET', keys[1]) == args[1] then
    return redis.call('DEL', keys[1])
  end
  return 0
end

redis.register_function('lease_release', lease_release)

-- FCALL lease_renew 1 <pause key> <token> <ms>
--   Extends a rebuild's pause lease if it still holds it. Returns 1 if extended.

local function lease_renew(keys, args)
  if redis.call('GET', keys[1]) == args[1] then
    return redis.call('PEXPIRE', keys[1], args[2])
  end
  return 0
end

redis.register_function('lease_renew', lease_renew)

-- FCALL dead_letter 2 <stream> <dead-letter stream> <group> <entry id> <field> <value> ...
--   Acknowledges the entry and copies it (with the given fields: where it came from, why, and
--   its original fields) to the dead-letter stream, atomically and only if it was still pending,
--   so two consumers can never dead-letter it twice. Returns 1 if moved.

local function dead_letter(keys, args)
  if redis.call('XACK', keys[1], args[1], args[2]) == 0 then
    return 0
  end
  redis.call('XADD', keys[2], '*', unpack(args, 3))
  return 1
end

redis.register_function('dead_letter', dead_letter)

-- FCALL dead_letter_settle 2 <dead-letter stream> <actions hash> <parked id> <action>
--   Removes a parked entry and counts what an operator did with it (`retried`, `discarded`),
--   in one step and only if it was still parked: of two operators acting on one entry at
--   once, one does it and the other is told it is gone. Returns 1 if it was removed.

local function dead_letter_settle(keys, args)
  if redis.call('XDEL', keys[1], args[1]) == 0 then
    return 0
  end
  redis.call('HINCRBY', keys[2], args[2], 1)
  return 1
end

redis.register_function('dead_letter_settle', dead_letter_settle)

-- FCALL dead_letter_repark 1 <dead-letter stream> <parked id> <field> <value> ...
--   Parks a retried entry again under a new ID (with the given fields: the new reason, one
--   more retry), only if it was still parked under the old one; a discard or another retry
--   that came first wins, and nothing is brought back. Returns the new ID, or false.

local function dead_letter_repark(keys, args)
  if redis.call('XDEL', keys[1], args[1]) == 0 then
    return false
  end
  return redis.call('XADD', keys[1], '*', unpack(args, 2))
end

redis.register_function('dead_letter_repark', dead_letter_repark)

-- FCALL checkpoint <1 + n> <checkpoint hash> <stream 1> ... <stream n> <group>
--   Records, for each stream, an entry ID below which the group has acknowledged everything:
--   the entry just before its oldest pending one, or, with nothing pending, the last one
--   delivered. Read and written in one step, so no read or ack of another consumer falls in
--   between. A stream without the group is left as recorded. Returns the number recorded.

local MAX_SEQ = '18446744073709551615'

local function entry_before(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if not ms or (ms == '0' and seq == '0') then
    return '0-0'
  end
  if seq ~= '0' then
    return ms .. '-' .. string.format('%.0f', tonumber(seq) - 1)
  end
  return string.format('%.0f', tonumber(ms) - 1) .. '-' .. MAX_SEQ
end

local function checkpoint(keys, args)
  local group = args[1]
  local recorded = 0
  for i = 2, #keys do
    local groups = redis.pcall('XINFO', 'GROUPS', keys[i])
    if type(groups) == 'table' and not groups.err then
      for _, fields in ipairs(groups) do
        local info = {}
        for j = 1, #fields, 2 do
          info[fields[j]] = fields[j + 1]
        end
        if info['name'] == group then
          local safe = info['last-delivered-id']
          local pending = redis.call('XPENDING', keys[i], group)
          if pending[1] > 0 then
            safe = entry_before(pending[2])
          end
          redis.call('HSET', keys[1], keys[i], safe)
          recorded = recorded + 1
        end
      end
    end
  end
  return recorded
end

redis.register_function('checkpoint', checkpoint)
