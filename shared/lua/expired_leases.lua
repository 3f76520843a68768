-- Sessions whose run's lease deadline has passed (Redis time), oldest first: a page of the index.
-- KEYS: leases (zset)   ARGV: offset, count
local _, now_ms = clock()
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', ARGV[1], ARGV[2])
