-- The vocabulary every tokentail script shares. Its contract (shared/store/scripts/contract.py) puts these
-- files in front of each script (joined in the order of its LIB_FILES, this one first), after three
-- constants of the topology: PUBLISH_EVENTS ('PUBLISH', or 'SPUBLISH' on a Redis Cluster, so a
-- session's notifications stay on its shard), SPLIT_QUEUE (true when the job queue is on a Redis of
-- its own, which no script here can write to) and ARCHIVE, and two that Python shares
-- (shared/vocabulary/records.py: STEERS_STEP, MAX_PENDING_STEERS); and after them, the script's keys and
-- arguments bound by name: `k` (keys), `s` (the settings and session id of a script
-- that queues or ends runs: shared/store/scripts/runs.py `SessionArgs`), `a` (its own).
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
