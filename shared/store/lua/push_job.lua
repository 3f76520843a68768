-- Push a job the outbox of a session held (SPLIT_QUEUE) to arq's queue; pushing it twice queues it once.
-- Keys and arguments: shared/store/scripts/checks.py `PushJob`.
-- Returns 1 if it pushed the job, 0 if the queue held it already.
local _, now_ms = clock()
return push_job(k.queue, j, a.session_id, a.dispatch, now_ms) and 1 or 0
