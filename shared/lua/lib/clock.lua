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
