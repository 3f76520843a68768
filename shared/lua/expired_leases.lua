-- Entries of the leases index due for a look (Redis time), oldest first, with their scores: a page.
-- Keys and arguments: shared/scripts/checks.py `ExpiredLeases`.
local _, now_ms = clock()
return redis.call('ZRANGEBYSCORE', k.index, '-inf', now_ms, 'WITHSCORES', 'LIMIT', a.offset, a.count)
