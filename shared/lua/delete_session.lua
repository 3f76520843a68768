-- Delete a session and take away its run's lease: a worker still running it is fenced at its next
-- append, and a reaper finds nothing to take over. The tombstone names the owner, and the gateways
-- following the session are told (`gone` on its channel) and end their streams now.
-- With an archive, the session goes in the archive index, due now: the archiver deletes the archive's
-- copy too (the gateway deletes it at once; this is for a gateway that failed to).
-- KEYS: meta, runs, events, lease, pending, gone, steps, then the leases index unless SPLIT_QUEUE,
--       then the archive index with ARCHIVE
-- ARGV: tenant, tombstone_seconds, session_id
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7])
if not SPLIT_QUEUE then redis.call('ZREM', KEYS[8], ARGV[3]) end
if ARCHIVE then
  local _, now_ms = clock()
  redis.call('ZADD', KEYS[#KEYS], now_ms, ARGV[3])
end
redis.call('SET', KEYS[6], ARGV[1], 'EX', math.max(1, tonumber(ARGV[2])))
redis.call(PUBLISH_EVENTS, KEYS[3], 'gone')
return 1
