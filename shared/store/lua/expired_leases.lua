-- Entries of the leases index due for a look (Redis time), oldest first, with their scores: a page.
-- Keys, arguments and reply: shared/store/scripts/checks.py `ExpiredLeases`.
local _, now_ms = clock()
local entries = redis.call('ZRANGEBYSCORE', k.index, '-inf', now_ms, 'WITHSCORES', 'LIMIT', a.offset, a.count)
local due = {}
for i = 1, #entries, 2 do due[#due + 1] = {member = entries[i], score = entries[i + 1]} end
return reply.value{due = due}
