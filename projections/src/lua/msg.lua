-- (The library's `#!lua name=` line and the shared lease check, lua/lease.lua, are put ahead
-- of this source when it is compiled in: see msg.rs.)

-- The message service's delivery: a message is delivered iff its id is new to the delivered-ids
-- Set, and the Set and the mail sink (the stream `GET /emails` lists) change in one atomic step,
-- so a redelivered outbox entry, or the same message written twice, is delivered once.
--
-- FCALL msg_deliver <numkeys> <keys...> <args...>
--   KEYS[1] the pause lease, KEYS[2] delivered ids, KEYS[3] delivered messages
--   ARGV[1..3] mode ('live'), token, lease ms (the runner's common header: a sink only runs
--              live, so the lease check only asks whether an operator set the pause key)
--   ARGV[4..]  per message: msg_id, to, msg, kind, event_id, request_id (the last two may be
--              empty; they are copied when present, to trace a message back to its request)
--
-- Returns {0, delivered, duplicates}, or {-1} while an operator pauses delivery.

local function msg_deliver(keys, args)
  local ok, code = lease_ok(keys, args)
  if not ok then
    return {code}
  end
  local t = redis.call('TIME')
  local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  local delivered, duplicates = 0, 0
  for i = 4, #args, 6 do
    if redis.call('SADD', keys[2], args[i]) == 1 then
      local fields = {'msg_id', args[i], 'to', args[i + 1], 'msg', args[i + 2],
        'kind', args[i + 3], 'delivered_at', now}
      if args[i + 4] ~= '' then
        fields[#fields + 1] = 'event_id'
        fields[#fields + 1] = args[i + 4]
      end
      if args[i + 5] ~= '' then
        fields[#fields + 1] = 'request_id'
        fields[#fields + 1] = args[i + 5]
      end
      redis.call('XADD', keys[3], '*', unpack(fields))
      delivered = delivered + 1
    else
      duplicates = duplicates + 1
    end
  end
  return {0, delivered, duplicates}
end

redis.register_function('msg_deliver', msg_deliver)
