-- Delete a session and take away its run's lease: a worker still running it is fenced at its next
-- append, and a reaper finds nothing to take over. The tombstone names the owner, and the gateways
-- following the session are told (`gone` on its channel) and end their streams now.
-- KEYS: meta, runs, events, lease, pending, gone, then the leases index unless SPLIT_QUEUE
-- ARGV: tenant, tombstone_seconds, session_id
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
if not SPLIT_QUEUE then redis.call('ZREM', KEYS[7], ARGV[3]) end
redis.call('SET', KEYS[6], ARGV[1], 'EX', math.max(1, tonumber(ARGV[2])))
redis.call(PUBLISH_EVENTS, KEYS[3], 'gone')
return 1
