-- Claim due arq jobs for a worker, as arq 0.28's Worker.start_jobs claims them one at a time (a
-- WATCH on the in-progress key, EXISTS, ZSCORE, then PSETEX in a MULTI), and count their try as its
-- run_job does (INCR and EXPIRE of the retry key): all of a poll's jobs in one step, returned with
-- their payloads, so the worker reads nothing more before it runs them (worker/pickup.py).
-- First the jobs due in arq's queue (runs that started before: takeovers and hand-overs; and jobs
-- whose worker died before starting them), oldest first; then, with slots left, runs' jobs from the
-- tenants' lines (first jobs, and resumes after answers: push_job), in turn (lib/admission.lua's
-- Admission): each turn goes to the tenant with the lowest pass, which starts its oldest run whose
-- tenant and end user are below their caps. A job claimed holds a slot of its run's tenant and user
-- until its run gives it back (finish_jobs.lua).
-- With the queue apart from the sessions (`watch_ms` > 0), a claimed run's session is watched in the
-- leases index (`<sid>`, due when a lease taken now would run out, Redis time to the µs: its worker may
-- die before its run's start, or after) and the intent of the run's queuer (`<sid> <run id>`) goes: the
-- watch covers its job from now on (shared/store/lease_index.py); the watch's score, as Redis keeps it,
-- is returned, for the job's finish to drop it if nothing wrote it since. First, the jobs whose runs the
-- worker started since its last call leave the queue (`taken`: start_run.lua cannot take them out there).
-- Keys, arguments and reply: shared/store/scripts/pickup.py `ClaimJobs` (a job's payload nil: expired).
local most, count = tonumber(a.most), tonumber(a.count)
local jobs, looked, taken = {}, 0, 0
local A = q.admission
for _, job_id in ipairs(a.taken) do redis.call('ZREM', k.queue, job_id) end

-- Watch the session of a claimed job's run (`job`: owned_job's), in place of its queuer's intent: the
-- session and the watch's score, as the index keeps it.
local function watch(job)
  local session_id, run_id = job.a[1], job.a[2]
  if tonumber(a.watch_ms) == 0 or type(session_id) ~= 'string' or type(run_id) ~= 'string' then return nil end
  local t = redis.call('TIME')
  redis.call('ZADD', k.index, t[1] * 1000 + t[2] / 1000 + a.watch_ms, session_id)
  redis.call('ZREM', k.index, session_id .. ' ' .. run_id)
  return session_id, redis.call('ZSCORE', k.index, session_id)
end

-- The slot of a claimed job's run (`job`: owned_job's), in its tenant's and user's running hashes
-- under the prefix `A`; a run's later job takes over the slot its run holds.
local function hold_slot(A, job_id, job)
  local owner = job.k
  local run, user = job.a[1] .. ' ' .. job.a[2], type(owner.user) == 'string' and owner.user or ''
  redis.call('HSET', running_key(A, owner.tenant), run, job_id .. ' ' .. user)
  if user ~= '' then redis.call('HSET', running_key(A, owner.tenant, user), run, job_id) end
end

local function claim(job_id, score, admitted)
  local in_progress = p.in_progress .. job_id
  redis.call('SET', in_progress, '1', 'PX', a.in_progress_ms)
  local retry = p.retry .. job_id
  local job_try = redis.call('INCR', retry)
  redis.call('EXPIRE', retry, a.retry_ttl)
  local aborted = a.abort == '1' and redis.call('ZREM', k.aborts, job_id) or 0
  local payload = redis.call('GET', p.job .. job_id)
  local job = payload and owned_job(payload)
  local watched, watched_at
  if job then
    hold_slot(A, job_id, job)
    watched, watched_at = watch(job)
  end
  jobs[#jobs + 1] = {job_id = job_id, score = score, payload = payload, job_try = job_try, aborted = aborted == 1,
                     lined_at = admitted and job and job.et or nil, watched = watched, watched_at = watched_at}
  taken = taken + 1
end

while taken < most and looked < count do
  local window = math.min(256, count - looked)  -- a reply of a bounded size, however far it looks
  local due = redis.call('ZRANGEBYSCORE', k.queue, '-inf', a.now_ms, 'WITHSCORES', 'LIMIT', a.offset + looked, window)
  for i = 1, #due, 2 do
    looked = looked + 1
    if redis.call('EXISTS', p.in_progress .. due[i]) == 0 then
      claim(due[i], due[i + 1], false)
      if taken == most then break end
    end
  end
  if #due < 2 * window then break end  -- the end of what is due
end

-- The tenants' lines, in turn.
local caps, weights = {}, {}
for i = 1, #a.tenant_caps, 2 do caps[a.tenant_caps[i]] = tonumber(a.tenant_caps[i + 1]) end
for i = 1, #a.weights, 2 do weights[a.weights[i]] = tonumber(a.weights[i + 1]) end
local tenant_cap, user_cap = tonumber(q.tenant_cap), tonumber(q.user_cap)
local lines, parked = A .. 'lines', A .. 'parked'
local looks = 0  -- jobs of the lines looked at: bounded, however many wait behind users at their caps

-- The first job of the tenant's line whose user is below the cap, looking at up to `q.user_looks`.
local function first_admissible(tenant, line)
  local waiting = redis.call('ZRANGE', line, 0, q.user_looks - 1)
  for _, job_id in ipairs(waiting) do
    looks = looks + 1
    local payload = redis.call('GET', p.job .. job_id)
    if not payload then
      -- Expired while it waited: the reaper that finds its run still owed a job pushes it again.
      leave_line(k.queue, A, tenant, job_id)
    else
      local job = owned_job(payload)
      local user = job and job.k.user
      if user_cap == 0 or type(user) ~= 'string' or redis.call('HLEN', running_key(A, tenant, user)) < user_cap then
        return job_id
      end
    end
  end
end

while taken < most and looks < tonumber(q.most_looks) do
  local head = redis.call('ZRANGE', lines, 0, 0, 'WITHSCORES')
  if #head == 0 then break end
  local tenant, pass = head[1], tonumber(head[2])
  local cap = caps[tenant] or tenant_cap
  local line = line_key(A, tenant)
  if cap > 0 and redis.call('HLEN', running_key(A, tenant)) >= cap then
    redis.call('ZADD', parked, pass, tenant)  -- back in `lines` when one of its runs gives its slot back
    redis.call('ZREM', lines, tenant)
  else
    local job_id = first_admissible(tenant, line)
    redis.call('SET', A .. 'clock', pass)
    if job_id then
      local score = redis.call('ZSCORE', line, job_id)
      redis.call('ZREM', line, job_id)
      redis.call('ZADD', k.queue, score, job_id)  -- due, as arq sees it: picked again if its worker dies
      claim(job_id, score, true)
    end
    redis.call('ZADD', lines, pass + 1 / (weights[tenant] or 1), tenant)
    if redis.call('EXISTS', line) == 0 then leave_turn(A, tenant) end
  end
  looks = looks + 1
end
return reply.value{looked = looked, jobs = jobs}
