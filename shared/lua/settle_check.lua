-- A reaper is done with an entry of the leases index (or a deliverer with one of the webhooks
-- index): drop it, or (given a score) look again then; unless the entry changed since it was read
-- (a worker that starts a run writes its entry first; so does a new webhook event), so that what
-- came meanwhile is never left out of the index.
-- KEYS: the index   ARGV: member, score read, next score or ''
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
