-- The vocabulary every tokentail script shares. Its contract (shared/scripts/contract.py) puts this
-- file in front of each script, after three constants of the topology: PUBLISH_EVENTS ('PUBLISH',
-- or 'SPUBLISH' on a Redis Cluster, so a session's notifications stay on its shard), SPLIT_QUEUE
-- (true when the job queue is on a Redis of its own, which no script here can write to) and ARCHIVE,
-- and two that Python shares (shared/records.py: STEERS_STEP, MAX_PENDING_STEERS); and after it, the
-- script's keys and arguments bound by name: `k` (keys), `s` (the settings and session id of a script
-- that queues or ends runs: shared/scripts/runs.py `SessionArgs`), `a` (its own).
--
-- Leases. A run's `lease` key holds the token of the worker running it, with no expiry: it is the
-- fence (appends and renewals must present it). When the lease runs out is the meta field
-- `lease_until` (Redis time, ms), pushed back by the holder; only a reaper, which requeues a run
-- whose deadline passed while Redis was healthy, takes a lease away. So a worker cut off from
-- Redis for longer than a lease carries on with its run if it comes back before a reaper acts.
-- Reapers find the sessions to look at in the leases index (shared/lease_index.py). On one Redis,
-- the scripts keep it exact, in the same step as the lease: a session is in it, scored with its
-- lease's deadline, while its run holds a lease. With SPLIT_QUEUE it is on the queue's Redis, out of
-- a script's reach: its callers keep it as a list of places to look, written before what it points at.
--
-- Jobs. A script that queues a run records its job in the session's `dispatch` field (`<job_id>
-- <run_id>`), which the worker that starts the run clears: until then a reaper that looks at the
-- session pushes it again (pushing twice queues once), so a run is never left queued without a job,
-- whatever ended its job (a worker that failed it, a job that expired). With the queue on the same
-- Redis, the script also writes the arq job itself, in the same atomic step, and puts the session in
-- the leases index for that look. With SPLIT_QUEUE, the field is an outbox: the caller pushes the job
-- to the queue, and keeps the index's entry (shared/lease_index.py).
--
-- OOM. Over `maxmemory`, Redis refuses a script's first command that may grow memory, unless the
-- script has written already; so a script fails at its first write, changing nothing, or runs to
-- its end. Scripts check everything before they write: an error reply after a write would leave
-- half a change behind.

-- Redis time as the entry timestamp (`<s><µs>`), milliseconds, and seconds (float).
local function clock()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', t[2]), t[1] * 1000 + math.floor(t[2] / 1000), tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- Webhooks. A session with a `webhook` (meta field: its URL) keeps each event its webhook reports
-- in its `hooks` list, in the same step as the event, until a worker's deliverer (worker/webhook_delivery.py)
-- has posted it; the list outlives the session for as long as deliveries are retried. Deliverers
-- find the sessions to look at in the webhooks index (a sorted set beside the queue; see
-- shared/webhook_index.py): on one Redis this script puts the session in it, due now; with
-- SPLIT_QUEUE, the caller does, before and after the script.
local HOOKED = {['run.completed'] = true, ['run.failed'] = true, ['run.cancelled'] = true, ['input.required'] = true}

-- Which of a run's segments, the Responses API's responses, is going on: one more after each time it
-- went on after its questions were answered (`resumes`) and each steer taken in (its `steers`, kept as
-- opaque JSON). As RunRecord.segment (shared/records.py), which says why.
local function segment_of(run)
  local count = run.resumes or 0
  local steers = run.steers
  if type(steers) == 'string' then steers = cjson.decode(steers) end
  if type(steers) == 'table' then
    for _ in pairs(steers) do count = count + 1 end
  end
  return count
end

-- An entry also keeps the segment of its run that the event ends (segment_of): an OpenAI
-- webhook names that response, and the run's record may be gone (deleted) by its delivery.
-- A session with A2A push configs (`a2a_push`, watch_a2a_push.lua) keeps them too, with or without a
-- URL of its own: the deliverer posts each to its task's configs (shared/a2a_push.py).
local function add_hook(k, s, seq, event_type, data, ts, output)
  local hook = redis.call('HMGET', k.meta, 'webhook', 'tenant', 'a2a_push')
  local url = hook[1] or ''
  if url == '' and not hook[3] then return end
  local record = redis.call('HGET', k.runs, cjson.decode(data).run_id)
  local segment = record and segment_of(cjson.decode(record)) or 0
  local entry = {seq = seq, ts = ts, type = event_type, data = data, url = url, tenant = hook[2] or 'public',
                 output = output, segment = segment, a2a = hook[3] and true or nil}
  redis.call('RPUSH', k.hooks, cjson.encode(entry))
  redis.call('PEXPIRE', k.hooks, s.hooks_ttl_ms)
  if not SPLIT_QUEUE then redis.call('ZADD', k.hook_index, math.floor(tonumber(ts) / 1000), s.session_id) end
end

-- Seqs. A session's events are its stream's entries `<seq>-0`, seq 1, 2, ...: the stream's last
-- entry is the last seq given out. The meta's `seq` is only a floor under it, for a session whose
-- stream holds none of its events yet (brought back from the archive: revive_session.lua; a fork)
-- and for ids that must not be given out again (lost with Redis: requeue_run.lua's `past_seq`).
-- A running run's stream is never below that floor (its start wrote past it), so the per-token path
-- (append_at.lua, append_events.lua) reads the stream alone, and only when it checks an append whole.
--
-- The fence. The per-token path (append_at.lua) checks no lease: it appends a run's events at the ids
-- after the last its worker was told it wrote, `<seq>-0`, and Redis refuses an id not past the
-- stream's last generated id. So every script that takes a run's lease away from a worker that may
-- still be running it (a reaper's takeover, a hand-over, a cancel of a run no worker holds, a delete)
-- fences the stream: `fence` moves its last generated id past its top (XSETID `<top+1>-0`, no entry
-- written), and the old holder's next `XADD <top+1>-0` is refused by Redis itself, before and after
-- the new owner writes (a deleted stream refuses it too: NOMKSTREAM). The first entry after a fence
-- takes `<seq>-1` (put_event): seqs stay contiguous, and every reader takes an entry's seq as the
-- number before its dash, so ids, `MINID` retention and resumes are unchanged. A read after seq `n`
-- therefore starts at `n + 1` (inclusive), never at `(n-0` (which `n-1` would pass). The contracts say
-- which scripts fence (`Effect.TAKES_LEASE`), and tests/unit/test_contract.py checks that they do.
local function top_seq(k)
  local top = redis.call('XREVRANGE', k.events, '+', '-', 'COUNT', 1)[1]
  return top and tonumber(string.match(top[1], '^%d+')) or 0
end

local function last_seq(k)
  return math.max(top_seq(k), tonumber(redis.call('HGET', k.meta, 'seq') or 0))
end

-- Whether the run's worker may write: the FENCED error when the run's lease is no longer its
-- `token` (`fenced`: that check alone); the LOST error when the session's last seq is below
-- `expect`, the last seq the worker was told it wrote (Redis lost writes it acknowledged: a failover
-- to a replica a moment behind, a restart without them), for the worker to write them again under
-- their ids before going on; else nil.
local function fenced(k, run_id, token)
  if redis.call('GET', k.lease) ~= token then
    return redis.error_reply('FENCED run ' .. run_id .. ' no longer holds its lease')
  end
end

local function check_holder(k, run_id, token, seq, expect)
  local refused = fenced(k, run_id, token)
  if refused then return refused end
  if seq < tonumber(expect) then
    return redis.error_reply('LOST ' .. seq .. ' is the last seq of run ' .. run_id .. "'s session, not " .. expect)
  end
end

-- The checks before an append (append.lua), with `k` the session's keys: the seq of the first try
-- when this append went through already (sent again after its reply was lost: by the writer, or by
-- the Redis client's own retry, so even a "first" try may be a second); or nil and check_holder's
-- error; or nil, nil when the append may go ahead.
local function check_append(k, run_id, token, append_id, expect)
  local meta = redis.call('HMGET', k.meta, 'last_append', 'last_append_seq')
  if meta[1] == append_id then
    return tonumber(meta[2])
  end
  return nil, check_holder(k, run_id, token, last_seq(k), expect)
end

-- The seq of the last of `events` (type, data pairs) if they are entries of the stream after
-- `expect`, one after the other: an append of the per-token path sent again whose first try went
-- through, maybe after another writer's events. Asked for the lease's holder only: its worker appends
-- nothing else meanwhile (one append in flight per run), and no one else writes its run's events
-- after `expect` (an earlier attempt is fenced): entries equal to its own are its own.
local function appended_after(k, expect, events)
  local entries = redis.call('XRANGE', k.events, expect + 1, '+')
  for i, entry in ipairs(entries) do
    if entry[2][2] == events[1] and entry[2][4] == events[2] then
      local n = #events / 2
      for j = 2, n do
        local fields = (entries[i + j - 1] or {})[2]
        if not fields or fields[2] ~= events[2 * j - 1] or fields[4] ~= events[2 * j] then return nil end
      end
      return tonumber(string.match(entries[i + n - 1][1], '^%d+'))
    end
  end
  return nil
end

-- With an archive, a session whose run is going is looked at this often (worker/archiver.py's claim).
local ARCHIVE_RUNNING_MS = 30000

-- Store an event as stream entry `<seq>-0` (the caller took `seq` past the last: see Seqs), or
-- `<seq>-1` right after a fence, and publish it, as `<seq> <ts> <type> <data>`, on the channel named
-- like the stream key: the gateways' hubs (gateway/reading/hub.py) follow live sessions by these
-- notifications, not by reading.
-- With an archive, the stream keeps every event the archive does not have yet (its `archived` id in
-- the meta, which the archiver moves on), past the bound if it must: nothing is forgotten unarchived.
-- `try`: the stream may refuse `seq`, not past its last entry; then nothing is stored or published,
-- and it returns false.
local function put_event(k, s, seq, event_type, data, ts, archived, try)
  local trim, bound = 'MAXLEN', s.maxlen
  if ARCHIVE then
    archived = archived or tonumber(redis.call('HGET', k.meta, 'archived') or 0)
    trim, bound = 'MINID', math.max(0, math.min(seq - tonumber(s.maxlen), archived) + 1)
  end
  local added = redis.pcall('XADD', k.events, trim, '~', bound, seq .. '-0', 'type', event_type, 'data', data, 'ts', ts)
  if type(added) == 'table' and added.err then
    -- Refused: another writer took the id (`try`), or a fence moved the stream's last id to `<seq>-0`
    -- with no entry there, and the entry takes `<seq>-1` (or the write itself failed: raised here).
    if try or top_seq(k) >= seq then return false end
    redis.call('XADD', k.events, trim, '~', bound, seq .. '-1', 'type', event_type, 'data', data, 'ts', ts)
  end
  redis.call(PUBLISH_EVENTS, k.events, seq .. ' ' .. ts .. ' ' .. event_type .. ' ' .. data)
  return true
end

-- Fence the session's stream (see Seqs): its last id past its top, so that a worker that held its run's
-- lease until now can no longer append there. A stream not there (deleted, never made) needs none.
local function fence(k)
  if redis.call('EXISTS', k.events) == 1 then redis.call('XSETID', k.events, (last_seq(k) + 1) .. '-0') end
end

-- Append one event as the session's next seq; returns the seq. `output`: a completed run's answer,
-- which its webhook carries (the stream leaves it to the record).
local function add_event(k, s, event_type, data, ts, output)
  local seq = last_seq(k) + 1
  put_event(k, s, seq, event_type, data, ts)
  if HOOKED[event_type] then add_hook(k, s, seq, event_type, data, ts, output) end
  return seq
end

-- Admission. A run's first job waits its turn in its tenant's line; workers take the tenants' lines
-- in turn, and a run starts only while its tenant and its end user hold fewer slots than their caps
-- (claim_jobs.lua). Its later jobs (a takeover, a hand-over, a resume after its answers) go to arq's
-- queue at once: a run that started is never held back again. Keys on the queue's Redis, under the
-- prefix `j.admission` (shared/keys.py names them the same way):
--   line:<tenant>           sorted set: the tenant's waiting first jobs -> when queued (ms)
--   lines                   sorted set: the tenants whose line may be taken from -> their pass
--   parked                  sorted set: tenants at their cap, with a line -> their pass (back in `lines`
--                           when one of their runs gives its slot back)
--   clock                   the pass of the last turn taken: where a tenant joining comes in
--   passes                  hash: a tenant whose line emptied -> its pass then, if past the clock: back
--                           with a run soon after, it does not take a turn it was owed no longer
--   tenants                 set: the tenants that queued runs (shared/admission.py reads them; as
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

-- The slot of a claimed job's run (`job`: owned_job's), in its tenant's and user's running hashes
-- under the prefix `A`; a run's later job takes over the slot its run holds.
local function hold_slot(A, job_id, job)
  local owner = job.k
  local run, user = job.a[1] .. ' ' .. job.a[2], type(owner.user) == 'string' and owner.user or ''
  redis.call('HSET', running_key(A, owner.tenant), run, job_id .. ' ' .. user)
  if user ~= '' then redis.call('HSET', running_key(A, owner.tenant, user), run, job_id) end
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

-- Give back the slot of a job that is over (`job`: owned_job's), if that job holds it.
local function job_over(A, wake_channel, job_id, job)
  local run, running = job.a[1] .. ' ' .. job.a[2], running_key(A, job.k.tenant)
  local held = redis.call('HGET', running, run)
  if held and string.match(held, '^%S+') == job_id then give_back_slot(A, wake_channel, job.k.tenant, run, held) end
end

-- Push a job to arq, on the queue's Redis (its key `queue`): the job in arq 0.28's layout (JSON: try,
-- function, args, kwargs, enqueue time; see shared/jobs.py), its place (its tenant's line, or the
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

-- The session's place in the leases index (see Leases above): at `deadline` (ms), or out of it.
local function index_lease(k, s, deadline)
  if SPLIT_QUEUE then return end
  if deadline then
    redis.call('ZADD', k.index, deadline, s.session_id)
  else
    redis.call('ZREM', k.index, s.session_id)
  end
end

-- Hand the session's active run to arq: now, or through the outbox (see Jobs above). The job names
-- the run's owner: the session's tenant, and a digest of its end user (any text a request named):
-- the run's `user`, else the session's. `run`: its record, when the caller has it decoded already.
-- `in_line`: a later job of the run that earns a slot again in its tenant's line (push_job).
local function queue_job(k, s, run_id, job_id, now_ms, run, in_line)
  local meta = redis.call('HMGET', k.meta, 'tenant', 'user')
  local dispatch = job_id .. ' ' .. run_id .. ' ' .. (meta[1] or 'public')
  run = run or cjson.decode(redis.call('HGET', k.runs, run_id))
  local user = run.user
  if type(user) ~= 'string' then user = meta[2] end
  local digest = user and string.sub(redis.sha1hex(user), 1, 16)
  if in_line then  -- its place: when the run first queued
    local since = math.floor(1000 * (tonumber(run.queued_at) or now_ms / 1000))
    dispatch = dispatch .. ' ' .. (digest or '') .. ' ' .. since
  elseif digest then
    dispatch = dispatch .. ' ' .. digest
  end
  redis.call('HSET', k.meta, 'dispatch', dispatch, 'dispatched_at', now_ms)
  if not SPLIT_QUEUE then
    push_job(k.queue, s, s.session_id, dispatch, now_ms)
    index_lease(k, s, now_ms + s.queued_look_ms)
  end
end

local function get_run(runs, run_id)
  return cjson.decode(redis.call('HGET', runs, run_id))
end

-- The tombstone names the owner, so another tenant is told 404 for a gone session, as for none.
local function bury(k, ttl, tombstone)
  local tenant = redis.call('HGET', k.meta, 'tenant') or 'public'
  redis.call('SET', k.gone, tenant, 'EX', ttl + tombstone)
end

-- Steers. Input for the active run while it runs waits in the session's `steers` list (each a JSON
-- record {steer_id, run_id, input}, in the order sent: steer.lua) until its agent takes it in
-- (apply_steers.lua: `steer.applied`, and the steers recorded as a step of the run, so an attempt that
-- goes on replays them and never applies them twice) or the run ends (`steer.failed`, here).
-- At most MAX_PENDING_STEERS wait per run; a client that sends more is told to wait (429). Every steer
-- is kept in the session's `steered` hash, under its id, with the run it went to and its
-- `steer.accepted`, so that the same steer sent again, whenever it comes (waiting, taken in, its run
-- ended), answers as the first did and is never kept twice; with each run's count and characters of
-- steers, which a run's bounds (`most`, `most_chars`; 0: none) refuse beyond; and its text (`i:<id>`),
-- which a run's record does not keep: taking a steer in then rewrites a record that holds only the
-- ids and places of those before it, never their texts, so its cost does not grow with them
-- (apply_steers.lua; readers put the texts back: shared/store.py's with_steer_texts). The hash lives
-- as the session's runs do: kept while a run is to come (queue_run.lua), expiring after the last.
local function fail_steers(k, s, reason, ts)
  local steers = redis.call('LRANGE', k.steers, 0, -1)
  if #steers == 0 then return end  -- (no DEL: a script's first write must be one a full Redis refuses)
  for _, raw in ipairs(steers) do
    local steer = cjson.decode(raw)
    local data = cjson.encode({run_id = steer.run_id, steer_id = steer.steer_id, reason = reason})
    add_event(k, s, 'steer.failed', data, ts)
  end
  redis.call('DEL', k.steers)
end

-- A steer kept before under `steer_id` (a request sent again): the run it went to and the seq of its
-- `steer.accepted`; else nil.
local function steered_before(k, steer_id)
  local kept = redis.call('HGET', k.steered, steer_id)
  if not kept then return nil end
  local run_id, seq = string.match(kept, '^(%S+) (%d+)$')
  return run_id, tonumber(seq)
end

-- Keep a steer of `chars` characters for the session's active run `run_id` (steer.lua; queue_run.lua's
-- multitask `steer`): its record, then `steer.accepted`, then a word to the worker (`channel`).
-- Returns 'ok' and the event's seq; 'too_many' (as many wait as may); 'limit' (the run took in as many
-- steers, or characters of them, as it may). A steer sent again is found by steered_before, first.
local function add_steer(k, s, run_id, steer_id, input, chars, most, most_chars, channel)
  if redis.call('LLEN', k.steers) >= MAX_PENDING_STEERS then return 'too_many' end
  local count, taken = unpack(redis.call('HMGET', k.steered, 'n:' .. run_id, 'c:' .. run_id))
  count, taken = tonumber(count or 0), tonumber(taken or 0)
  if (most > 0 and count >= most) or (most_chars > 0 and taken + chars > most_chars) then return 'limit' end
  local steer = cjson.encode({steer_id = steer_id, run_id = run_id, input = input})  -- the record, and the event's data
  redis.call('RPUSH', k.steers, steer)
  local seq = add_event(k, s, 'steer.accepted', steer, (clock()))
  redis.call('HSET', k.steered, steer_id, run_id .. ' ' .. seq, 'n:' .. run_id, count + 1, 'c:' .. run_id,
             taken + chars, 'i:' .. steer_id, input)
  redis.call('PUBLISH', channel, run_id)
  return 'ok', seq
end

-- A run that starts over takes in again the steers its dropped attempts took (`steps`: the steps
-- hash, flat): the drop took their `steer.applied` back. They go first, in the order they came.
local function steer_again(k, steps)
  local taken = {}
  for i = 1, #steps, 2 do
    local n = string.match(steps[i], '^' .. STEERS_STEP .. '#(%d+)$')
    if n then taken[#taken + 1] = {tonumber(n), cjson.decode(steps[i + 1])} end
  end
  table.sort(taken, function(x, y) return x[1] < y[1] end)
  for i = #taken, 1, -1 do
    local steers = taken[i][2]
    for j = #steers, 1, -1 do redis.call('LPUSH', k.steers, cjson.encode(steers[j])) end
  end
end

-- End the active run with its terminal event (`data` as stored; `outcome` the record's fields):
-- fail the steers it did not take in (`steer_failure`: why, 'run_ended' by default), record the
-- outcome, free the session and the lease, then start the next run in line or, with none, start the
-- retention clock. Returns the terminal event's seq.
local function end_run(k, s, run_id, status, event_type, data, outcome, ts, now_ms, now_s, steer_failure)
  fail_steers(k, s, steer_failure or 'run_ended', ts)
  local seq = add_event(k, s, event_type, data, ts, outcome.output)
  local run = get_run(k.runs, run_id)
  run.status = status
  run.finished_seq = seq
  run.finished_at = now_s
  run.steps, run.step_seq = nil, nil  -- (kept in the record by versions before the steps hash)
  redis.call('DEL', k.steps)  -- only a run that goes on replays them
  for field, value in pairs(outcome) do run[field] = value end
  redis.call('HSET', k.runs, run_id, cjson.encode(run))
  redis.call('HSET', k.meta, 'active_run', '')
  redis.call('HDEL', k.meta, 'cancel_run', 'lease_until', 'dispatch', 'dispatched_at', 'claim')
  redis.call('DEL', k.lease)
  index_lease(k, s, nil)
  local next_run = redis.call('LPOP', k.pending)
  if next_run then
    redis.call('HSET', k.meta, 'active_run', next_run)
    queue_job(k, s, next_run, next_run, now_ms)
  elseif ARCHIVE then
    -- The archiver copies the session, then starts its retention clock (archived.lua).
    redis.call('ZADD', k.archive, now_ms, s.session_id)
  else
    redis.call('EXPIRE', k.meta, s.ttl)
    redis.call('EXPIRE', k.runs, s.ttl)
    redis.call('EXPIRE', k.events, s.ttl)
    redis.call('EXPIRE', k.steered, s.ttl + s.tombstone)  -- (a steer sent again is known while its session is)
    bury(k, s.ttl, s.tombstone)
  end
  return seq
end

-- End the active run as cancelled, without a worker: it is queued, or no worker holds it. A job
-- still waiting in its tenant's line leaves it (with SPLIT_QUEUE, the caller takes it out: the meta's
-- `unqueue` names it); after the run's end, whose first write a full Redis refuses (see OOM above).
local function cancel_unheld(k, s, run_id, reason)
  local ts, now_ms, now_s = clock()
  local owed = redis.call('HGET', k.meta, 'dispatch')
  local data = cjson.encode({run_id = run_id, reason = reason})
  fence(k)  -- (its first write, which a full Redis refuses: XSETID may grow memory)
  local seq = end_run(k, s, run_id, 'cancelled', 'run.cancelled', data, {reason = reason}, ts, now_ms, now_s)
  if owed and SPLIT_QUEUE then
    redis.call('HSET', k.meta, 'unqueue', owed)
  elseif owed then
    unqueue_job(k.queue, s, owed)
  end
  return seq
end

-- The questions a waiting run waits for (ask.lua), their input ids in the order asked; `run.expiry` has
-- each one's deadline (`at`, ms) and default answer (JSON text) if it takes one when it expires. One
-- question is named alone, as records were before several could be open: it is read as a list of one
-- (and a record of then, with no `expiry`, has its deadline and default answer where it kept them: the
-- answer's text is the last field of the input.received data it precomputed, taken as it is).
local function open_questions(run)
  if type(run.waiting_for) == 'string' then
    if not run.expiry then
      local default = run.on_expiry_received and string.match(run.on_expiry_received, '"answer":(.*)}$')
      run.expiry = {[run.waiting_for] = {at = run.waiting_until, default = default}}
    end
    run.waiting_for = {run.waiting_for}
    run.on_expiry_answers, run.on_expiry_received = nil, nil
  end
  return run.waiting_for or {}
end

-- The earliest deadline of the questions the run waits for, or nil.
local function next_deadline(run)
  local earliest
  for _, input_id in ipairs(open_questions(run)) do
    local at = run.expiry and run.expiry[input_id] and run.expiry[input_id].at
    if at and (not earliest or at < earliest) then earliest = at end
  end
  return earliest
end

-- Take the answer (JSON text) to one of the questions a waiting run waits for (answer.lua; or a reaper,
-- with the answer an expired question takes by default): append `input.received` and record it. The
-- run's answers are a JSON object's text, kept opaque (cjson would round numbers and turn [] into {}):
-- the answer is spliced in, its input id new to it. The last answer the run waits for queues it again
-- (one more of its `resumes`); until then `input.received` names those still open (`waiting_for`).
local function take_answer(k, s, run_id, run, input_id, answer, job_id, ts, now_ms)
  local open = {}
  for _, id in ipairs(open_questions(run)) do
    if id ~= input_id then open[#open + 1] = id end
  end
  local entry = cjson.encode(input_id) .. ':' .. answer
  local answers = run.answers
  if type(answers) == 'table' then answers = cjson.encode(answers) end
  if not answers or answers == '{}' then run.answers = '{' .. entry .. '}'
  else run.answers = string.sub(answers, 1, -2) .. ',' .. entry .. '}' end
  local received = '{"run_id":' .. cjson.encode(run_id) .. ',"input_id":' .. cjson.encode(input_id) .. ',"answer":' .. answer
  if #open > 0 then received = received .. ',"waiting_for":' .. cjson.encode(open) end
  local seq = add_event(k, s, 'input.received', received .. '}', ts)
  if run.expiry then run.expiry[input_id] = nil end
  if #open > 0 then
    run.waiting_for = open
    run.waiting_until = next_deadline(run)
    redis.call('HSET', k.runs, run_id, cjson.encode(run))
    index_lease(k, s, run.waiting_until)
    return seq
  end
  run.status = 'queued'
  run.waiting_for, run.waiting_until, run.expiry = nil, nil, nil
  run.resumes = (run.resumes or 0) + 1
  redis.call('HSET', k.runs, run_id, cjson.encode(run))
  index_lease(k, s, nil)
  queue_job(k, s, run_id, job_id, now_ms, run, true)
  return seq
end
