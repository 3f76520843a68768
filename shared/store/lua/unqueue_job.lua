-- Take the job a session's outbox held out of its tenant's line, if it still waits there (SPLIT_QUEUE:
-- lib/runs.lua's cancel_unheld left it in the meta's `unqueue`).
-- Keys and arguments: shared/store/scripts/checks.py `UnqueueJob`.
unqueue_job(k.queue, j, a.dispatch)
return 0
