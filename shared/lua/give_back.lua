-- Give back a slot a run holds, if it still holds it as the caller read it (shared/admission.py's
-- audit: its run no longer runs, and no job of it will give it back).
-- Keys and arguments: shared/scripts/pickup.py `GiveBack`. Returns 1 if it gave it back.
if redis.call('HGET', k.running, a.run) ~= a.held then return 0 end
local job_id, user = string.match(a.held, '^(%S+) ?(%S*)$')
local session_id, run_id = string.match(a.run, '^(%S+) (%S+)$')
local owner = {tenant = a.tenant}
if user ~= '' then owner.user = user end
return give_back_slot(a.admission, a.wake_channel, job_id, {a = {session_id, run_id}, k = owner}) and 1 or 0
