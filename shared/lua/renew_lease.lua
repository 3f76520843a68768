-- Heartbeat: extend the lease only if this worker still holds it.
-- KEYS: lease   ARGV: lease_token, lease_ms   Returns 1 if renewed, 0 if the lease is lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
