-- A tenant parked at its cap that holds fewer slots than its cap now (raised since, or a failover lost
-- what gave them back) takes turns again: no run of its might end to unpark it (shared/features/admission.py's
-- audit). At its cap still, the next claim parks it again.
-- Keys and arguments: shared/store/scripts/pickup.py `Unpark` (`cap`: the tenant's, 0 for none). Returns 1
-- if it unparked it.
local cap = tonumber(a.cap)
if not redis.call('ZSCORE', a.admission .. 'parked', a.tenant) then return 0 end
if cap > 0 and redis.call('HLEN', k.running) >= cap then return 0 end
unpark(a.admission, a.tenant)
redis.call('PUBLISH', a.wake_channel, a.tenant)
return 1
