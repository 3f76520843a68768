-- Record the result of one step of the active run (worker/run/context.py `RunContext.step`), under its
-- lease: a worker that takes the run over replays it instead of doing it again. Kept in the session's
-- steps hash, apart from the run's record (which every script acting on the run decodes: a step costs
-- its own size, not the run's), until the run starts over (start_run.lua) or ends (lib/runs.lua's end_run
-- keeps them then, for forks). Beside the steps, by keys that no step key (`<name>#<n>`, a name never
-- starting with `@`; `tool:<call id>`) can be: `seq`, the last event id the run
-- wrote before its last step (what an agent that redoes what followed its last step keeps; the worker
-- flushed what it streamed before the step), `bytes`, the steps' total size, bounded, and `@<step key>`,
-- each step's own seq: a fork at an event of the run keeps the steps recorded by then (gateway/commands/branching.py).
-- Keys, arguments and replies: shared/store/scripts/runs.py `RecordStep`: the steps' total size, or the
-- total it would be (too_large: nothing written).
local refused = fenced(k, a.run_id, a.lease_token)
if refused then return refused end
local total = tonumber(redis.call('HGET', k.steps, 'bytes') or 0) - redis.call('HSTRLEN', k.steps, a.step_key) + #a.value
if total > tonumber(a.max_bytes) then return reply.too_large{total = total} end
redis.call('HSET', k.steps, a.step_key, a.value, 'seq', a.seq, 'bytes', total, '@' .. a.step_key, a.seq)
return reply.ok{total = total}
