-- Entries of the leases index due for a look (Redis time), oldest first, with their scores: a page.
-- KEYS: the leases index (zset)   ARGV: offset, count
local _, now_ms = clock()
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'WITHSCORES', 'LIMIT', ARGV[1], ARGV[2])
