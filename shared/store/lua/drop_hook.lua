-- A delivered (or given up) webhook event leaves its session's `hooks` list: the head, only if it
-- is still the entry delivered (a second deliverer may have taken it off already).
-- Keys and arguments: shared/store/scripts/checks.py `DropHook`.
-- Returns 1 if dropped, 0 if it was not the head.
if redis.call('LINDEX', k.hooks, 0) == a.entry then redis.call('LPOP', k.hooks) return 1 end
return 0
