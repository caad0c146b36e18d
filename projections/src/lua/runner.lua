#!lua name=ordershop_runner

-- Helpers of the consumer-group runner and the rebuild that must be atomic.
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
