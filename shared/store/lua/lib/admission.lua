-- Admission. A run's first job waits its turn in its tenant's line; workers take the tenants' lines
-- in turn, and a run starts only while its tenant and its end user hold fewer slots than their caps
-- (claim_jobs.lua). Its later jobs (a takeover, a hand-over, a resume after its answers) go to arq's
-- queue at once: a run that started is never held back again. Keys on the queue's Redis, under the
-- prefix `j.admission` (shared/store/keys.py names them the same way):
--   line:<tenant>           sorted set: the tenant's waiting first jobs -> when queued (ms)
--   lines                   sorted set: the tenants whose line may be taken from -> their pass
--   parked                  sorted set: tenants at their cap, with a line -> their pass (back in `lines`
--                           when one of their runs gives its slot back)
--   clock                   the pass of the last turn taken: where a tenant joining comes in
--   passes                  hash: a tenant whose line emptied -> its pass then, if past the clock: back
--                           with a run soon after, it does not take a turn it was owed no longer
--   tenants                 set: the tenants that queued runs (shared/features/admission.py reads them; as
--                           many as the API keys name)
--   running:<tenant>        hash: the tenant's runs holding a slot, `<sid> <run id>` -> `<job id> <user>`
--   running:<tenant>:<user> hash: the same, of one end user -> `<job id>`
-- Each turn moves the tenant's pass on by 1 / its weight (stride scheduling), so a tenant with a long
-- line delays a newcomer by about one turn, never by its line's length. A waiting job is in arq's
-- queue too, deferred (its score WAITING_MS later), so an arq client sees it; its turn makes it due.
-- A job names its run's owner in its kwargs (`tenant`, `user`: a digest of the request's `user`).
local WAITING_MS = 1e13

-- The keys of a tenant's line, and of the slots of its runs (of one user's, with `user`).
local function line_key(A, tenant) return A .. 'line:' .. tenant end
local function running_key(A, tenant, user)
  if user then return A .. 'running:' .. tenant .. ':' .. user end
  return A .. 'running:' .. tenant
end

-- A job owed (the session's `dispatch`): `<job id> <run id> <tenant> <user>`, the last two optional
-- (an owed job written by a version before admission has none, and runs with no slot); or
-- `<job id> <run id> <tenant> <user> <since>` (the user may be empty) for a run's later job that
-- earns a slot again in its tenant's line, at the place `since` (ms: when the run first queued).
local function parse_dispatch(dispatch)
  local job_id, run_id, tenant, user, since = string.match(dispatch, '^(%S+) (%S+) (%S*) (%S*) (%d+)$')
  if job_id then return job_id, run_id, tenant, user, tonumber(since) end
  return string.match(dispatch, '^(%S+) (%S+) ?(%S*) ?(%S*)$')
end

-- The tenant takes turns (again): at the pass it had, or the clock's if that is past it, so it is
-- never owed the turns it missed while out of them.
local function join_turn(A, tenant, pass)
  redis.call('ZADD', A .. 'lines', math.max(tonumber(pass), tonumber(redis.call('GET', A .. 'clock') or 0)), tenant)
end

-- A job waits in its tenant's line at place `at` (ms); the tenant joins the turn if it is not in it.
local function wait_in_line(queue, j, tenant, job_id, at)
  local A = j.admission
  redis.call('SADD', A .. 'tenants', tenant)
  redis.call('ZADD', line_key(A, tenant), at, job_id)
  redis.call('ZADD', queue, WAITING_MS + at, job_id)
  if not redis.call('ZSCORE', A .. 'lines', tenant) and not redis.call('ZSCORE', A .. 'parked', tenant) then
    join_turn(A, tenant, redis.call('HGET', A .. 'passes', tenant) or 0)
    redis.call('HDEL', A .. 'passes', tenant)
  end
end

-- The tenant's line is empty: it leaves the turn (`lines` or `parked`), its pass kept (see `passes`).
local function leave_turn(A, tenant)
  local pass = redis.call('ZSCORE', A .. 'lines', tenant) or redis.call('ZSCORE', A .. 'parked', tenant)
  if not pass then return end
  redis.call('ZREM', A .. 'lines', tenant)
  redis.call('ZREM', A .. 'parked', tenant)
  if tonumber(pass) > tonumber(redis.call('GET', A .. 'clock') or 0) then redis.call('HSET', A .. 'passes', tenant, pass) end
end

-- A job leaves its tenant's line (and arq's queue, where it waited deferred); the tenant leaves the
-- turn if its line is empty now. Returns whether the job was in the line.
local function leave_line(queue, A, tenant, job_id)
  local line = line_key(A, tenant)
  if redis.call('ZREM', line, job_id) == 0 then return false end
  redis.call('ZREM', queue, job_id)
  if redis.call('EXISTS', line) == 0 then leave_turn(A, tenant) end
  return true
end

-- A job's payload decoded, if it is one of tokentail's naming its run's owner (arq's own jobs are
-- pickled, by default): its run `a` (session id, run id) and its owner `k` (tenant, user); else nil.
local function owned_job(payload)
  local ok, job = pcall(cjson.decode, payload)
  if ok and type(job) == 'table' and type(job.k) == 'table' and type(job.k.tenant) == 'string' then return job end
end

-- A tenant parked at its cap takes turns again.
local function unpark(A, tenant)
  local pass = redis.call('ZSCORE', A .. 'parked', tenant)
  if not pass then return end
  redis.call('ZREM', A .. 'parked', tenant)
  join_turn(A, tenant, pass)
end

-- Give back the slot run `run` (`<sid> <run id>`) of `tenant` holds, if it is held as `held` (`<job
-- id> <user>`: a job that is over gives back its run's slot only while that job holds it, not a later
-- job's, a takeover's while this one's worker was cut off). A tenant parked at its cap takes turns
-- again, and idle workers are woken (`wake_channel`) to start its next run. Whether it gave it back.
local function give_back_slot(A, wake_channel, tenant, run, held)
  local running = running_key(A, tenant)
  if redis.call('HGET', running, run) ~= held then return false end
  redis.call('HDEL', running, run)
  local user = string.match(held, '^%S+ (%S+)$')
  if user then redis.call('HDEL', running_key(A, tenant, user), run) end
  unpark(A, tenant)
  if redis.call('EXISTS', line_key(A, tenant)) == 1 then redis.call('PUBLISH', wake_channel, tenant) end
  return true
end

-- Push a job to arq, on the queue's Redis (its key `queue`): the job in arq 0.28's layout (JSON: try,
-- function, args, kwargs, enqueue time; see shared/store/jobs.py), its place (its tenant's line, or the
-- queue), and a wake-up for idle workers; `j` holds the job settings (job_function, job_prefix,
-- job_ttl_ms, wake_channel, admission). A job id arq still holds is left alone, so pushing the same job
-- twice queues it once. arq's keys carry no hash tag. Returns whether it pushed the job (it was not there).
-- A run's first job waits at the end of its tenant's line, and a run resumed after its answers at the
-- place it first had (`since`: it waited for a person, holding no slot, and earns one again, ahead of
-- the runs queued after it); a takeover's or a hand-over's job goes to the queue, due now.
local function push_job(queue, j, session_id, dispatch, now_ms)
  local job_id, run_id, tenant, user, since = parse_dispatch(dispatch)
  local owner = {}
  if tenant ~= '' then owner.tenant = tenant end
  if user ~= '' then owner.user = user end
  local job = cjson.encode({t = cjson.null, f = j.job_function, a = {session_id, run_id}, k = owner, et = now_ms})
  if not redis.call('SET', j.job_prefix .. job_id, job, 'PX', j.job_ttl_ms, 'NX') then return false end
  if owner.tenant and (job_id == run_id or since) then
    wait_in_line(queue, j, tenant, job_id, since or now_ms)
  else
    redis.call('ZADD', queue, now_ms, job_id)
  end
  redis.call('PUBLISH', j.wake_channel, job_id)
  return true
end

-- Take an owed job out of its tenant's line, if it still waits there (its run ended unstarted): its
-- place frees at once. A job admitted already is left to its worker, which finds its run ended.
local function unqueue_job(queue, j, dispatch)
  local job_id, _, tenant = parse_dispatch(dispatch)
  if tenant ~= '' and leave_line(queue, j.admission, tenant, job_id) then redis.call('DEL', j.job_prefix .. job_id) end
end
