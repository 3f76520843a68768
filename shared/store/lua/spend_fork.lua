-- Spend what a fork costs its tenant, or nothing: one of its runs per minute (a fork is a session
-- made) and the bytes it copies, of its hour's bound. A limit of 0 is no limit: its counter is left
-- alone. Both counters are the tenant's (one hash tag: one slot), and a refused fork counts in
-- neither, so a fork too large for what is left of the hour does not use up what smaller ones may.
-- Keys and arguments: shared/store/scripts/limits.py `SpendFork`.
-- Returns 1 if spent, 0 if the minute's runs are used up, -1 if the bytes would pass the hour's bound.
local runs_limit, bytes_limit, copied = tonumber(a.runs_limit), tonumber(a.bytes_limit), tonumber(a.copied)
local runs, used = redis.call('GET', k.runs), redis.call('GET', k.bytes)
if runs_limit > 0 and tonumber(runs or 0) >= runs_limit then return 0 end
if bytes_limit > 0 and tonumber(used or 0) + copied > bytes_limit then return -1 end
if runs_limit > 0 then
  redis.call('INCR', k.runs)
  if not runs then redis.call('EXPIRE', k.runs, a.runs_ttl) end
end
if bytes_limit > 0 then
  redis.call('INCRBY', k.bytes, copied)
  if not used then redis.call('EXPIRE', k.bytes, a.bytes_ttl) end
end
return 1
