-- Finish arq jobs, each as arq 0.28's Worker.finish_job does in a transaction of its own: its
-- in-progress key goes (or is kept a while), and a job that is over loses its retry count, its
-- payload and its place in the queue (and in the aborts), keeping its result if asked; one to run
-- again later moves in the queue by its deferral. A worker's finishes that wait for the same round
-- trip go together (worker/pickup.py).
-- A job that is over gives back the slot its run holds (claim_jobs.lua), unless a later job of the
-- run holds it now (a takeover's, while this one's worker was cut off); the tenant, if it was parked
-- at its cap, takes turns again, and idle workers are woken to start its next run.
-- First, as in claim_jobs.lua, the jobs whose runs the worker started since its last call leave the
-- queue (`taken`); and the watches in the leases index of the runs that ended go (`dropped`: a session
-- and the score its claim wrote, shared/store/lease_index.py), each unless written since (a reaper moved
-- it, or a claim of the session's next run wrote it again: it is that run's now).
-- Keys and arguments: shared/store/scripts/pickup.py `FinishJobs` (`finishes`: 6 values per job, as `Finish`).
-- Returns how many jobs it finished.

-- Give back the slot of a job that is over (`job`: owned_job's), if that job holds it.
local function job_over(A, wake_channel, job_id, job)
  local run, running = job.a[1] .. ' ' .. job.a[2], running_key(A, job.k.tenant)
  local held = redis.call('HGET', running, run)
  if held and string.match(held, '^%S+') == job_id then give_back_slot(A, wake_channel, job.k.tenant, run, held) end
end

for _, job_id in ipairs(a.taken) do redis.call('ZREM', k.queue, job_id) end
for i = 1, #a.dropped, 2 do
  if redis.call('ZSCORE', k.index, a.dropped[i]) == a.dropped[i + 1] then redis.call('ZREM', k.index, a.dropped[i]) end
end
local f = a.finishes
for i = 1, #f, 6 do
  local job_id, over, result, result_ms, incr_score, keep_ms = f[i], f[i + 1], f[i + 2], f[i + 3], f[i + 4], f[i + 5]
  local in_progress = p.in_progress .. job_id
  if keep_ms == '' then
    redis.call('DEL', in_progress)
  else
    redis.call('PEXPIRE', in_progress, keep_ms)
  end
  if over == '1' then
    local payload = redis.call('GET', p.job .. job_id)
    local job = payload and owned_job(payload)
    if job then job_over(a.admission, a.wake_channel, job_id, job) end
    if result ~= '' and result_ms == '' then
      redis.call('SET', p.result .. job_id, result)
    elseif result ~= '' then
      redis.call('SET', p.result .. job_id, result, 'PX', result_ms)
    end
    redis.call('DEL', p.retry .. job_id, p.job .. job_id)
    redis.call('ZREM', k.aborts, job_id)
    redis.call('ZREM', k.queue, job_id)
  elseif incr_score ~= '' then
    redis.call('ZINCRBY', k.queue, incr_score, job_id)
  end
end
return #f / 6
