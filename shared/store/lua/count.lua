-- Count one more in a window's counter, which expires with its window.
-- Keys and arguments: shared/store/scripts/limits.py `Count`.
-- Returns the count.
local count = redis.call('INCR', k.counter)
if count == 1 then redis.call('EXPIRE', k.counter, a.ttl) end
return count
