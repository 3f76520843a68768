-- Count one more in a window's counter, which expires with its window.
-- KEYS: counter   ARGV: ttl_seconds   Returns the count.
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
