-- A delivered (or given up) webhook event leaves its session's `hooks` list: the head, only if it
-- is still the entry delivered (a second deliverer may have taken it off already).
-- KEYS: the session's hooks list   ARGV: the entry as read
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) return 1 end
return 0
