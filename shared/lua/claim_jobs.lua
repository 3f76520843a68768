-- Claim due arq jobs for a worker, as arq 0.28's Worker.start_jobs claims them one at a time (a
-- WATCH on the in-progress key, EXISTS, ZSCORE, then PSETEX in a MULTI), and count their try as its
-- run_job does (INCR and EXPIRE of the retry key): all of a poll's jobs in one step, returned with
-- their payloads, so the worker reads nothing more before it runs them (worker/pickup.py).
-- A job is claimed if it is due (its score, read here, at most now) and not in progress elsewhere.
-- Keys, arguments and reply: shared/scripts/pickup.py `ClaimJobs` (a job's payload nil: expired).
local most, count = tonumber(a.most), tonumber(a.count)
local jobs, looked, taken = {}, 0, 0
while taken < most and looked < count do
  local window = math.min(256, count - looked)  -- a reply of a bounded size, however far it looks
  local due = redis.call('ZRANGEBYSCORE', k.queue, '-inf', a.now_ms, 'WITHSCORES', 'LIMIT', a.offset + looked, window)
  for i = 1, #due, 2 do
    looked = looked + 1
    local job_id = due[i]
    local in_progress = p.in_progress .. job_id
    if redis.call('EXISTS', in_progress) == 0 then
      redis.call('SET', in_progress, '1', 'PX', a.in_progress_ms)
      local retry = p.retry .. job_id
      local job_try = redis.call('INCR', retry)
      redis.call('EXPIRE', retry, a.retry_ttl)
      local aborted = a.abort == '1' and redis.call('ZREM', k.aborts, job_id) or 0
      local payload = redis.call('GET', p.job .. job_id)
      jobs[#jobs + 1] = {job_id = job_id, score = due[i + 1], payload = payload, job_try = job_try, aborted = aborted == 1}
      taken = taken + 1
      if taken == most then break end
    end
  end
  if #due < 2 * window then break end  -- the end of what is due
end
return reply.value{looked = looked, jobs = jobs}
