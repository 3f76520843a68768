-- Push a job the outbox of a session held (SPLIT_QUEUE) to arq's queue; pushing it twice queues it once.
-- Keys and arguments: shared/scripts/checks.py `PushJob`.
local _, now_ms = clock()
push_job(k.queue, j, a.session_id, a.run_id, a.job_id, now_ms)
return 1
