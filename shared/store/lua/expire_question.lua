-- An operator ends one of the questions a waiting run waits for, now (the console's "expire"): its
-- deadline becomes now and the session is due in the leases index, so a reaper ends it as it ends any
-- question whose deadline passed (requeue_run.lua): the run fails (`input_expired`), or the question
-- takes its default answer and the run goes on. The one rule of what an expiry does stays there.
-- With SPLIT_QUEUE no script reaches the index: the caller makes the session due after this.
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `ExpireQuestion`.
local run, refused = waiting_run(k, a.run_id, a.input_id)
if not run then return reply[refused]{} end
local _, now_ms = clock()
if type(run.expiry) ~= 'table' then run.expiry = {} end
local expiry = run.expiry[a.input_id]
if type(expiry) ~= 'table' then expiry = {} end  -- (asked with no deadline: it fails the run when it ends)
expiry.at = now_ms
run.expiry[a.input_id] = expiry
run.waiting_until = now_ms
redis.call('HSET', k.runs, a.run_id, cjson.encode(run))
index_lease(k, s, now_ms)
return reply.ok{}
