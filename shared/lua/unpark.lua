-- A tenant parked at its cap holding no slot (a failover lost what gave them back) takes turns again:
-- no run of its would end to unpark it (shared/admission.py's audit). At a cap, the claim parks it again.
-- Keys and arguments: shared/scripts/pickup.py `Unpark`. Returns 1 if it was parked, holding none.
if redis.call('EXISTS', k.running) == 1 or not redis.call('ZSCORE', a.admission .. 'parked', a.tenant) then return 0 end
unpark(a.admission, a.tenant)
redis.call('PUBLISH', a.wake_channel, a.tenant)
return 1
