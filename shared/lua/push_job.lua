-- Push a job the outbox of a session held (SPLIT_QUEUE) to arq's queue; pushing it twice queues it once.
-- KEYS: queue   ARGV: session_id, job_ttl_ms, wake_channel, job key prefix, job function, job_id, run_id
local _, now_ms = clock()
local q = {queue = KEYS[1], job_ttl_ms = ARGV[2], wake_channel = ARGV[3], job_prefix = ARGV[4], job_function = ARGV[5]}
push_job(q, ARGV[1], ARGV[7], ARGV[6], now_ms)
return 1
