-- The pause lease check the CRM's, the mailer's, the entity cache's and the message service's
-- Functions start with (compiled into each library ahead of its own source: see crm.rs,
-- mailer.rs, entity_cache.rs, msg.rs). A sink (the mailer, the message service) only ever runs
-- live: a key set by hand pauses it. KEYS[1] is the projection's pause lease; ARGV 1..3 are
-- the mode ('live' | 'rebuild'), the rebuild's token and the lease in ms.
-- Live: go on only while no rebuild holds the lease (else -1: the runner holds the batch).
-- Rebuild: go on only while this rebuild's token holds it, and renew it (else -2).
local function lease_ok(keys, args)
  if args[1] == 'live' then
    return redis.call('EXISTS', keys[1]) == 0, -1
  end
  if redis.call('GET', keys[1]) ~= args[2] then
    return false, -2
  end
  redis.call('PEXPIRE', keys[1], args[3])
  return true, 0
end

