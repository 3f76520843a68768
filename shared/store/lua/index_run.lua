-- List a run just queued in the runs index (lib/run_index.lua): after queue_run.lua, where that script
-- could not (on a Redis Cluster, the index's keys share one hash tag of their own: one slot holds the
-- whole index), and again by a request sent again, whose gateway may have died in between.
-- Keys and arguments: shared/store/scripts/sessions.py `IndexRun`.
index_run(k.runs, k.tenant_runs, k.run, a.session_id, a.run_id, a.score, a.keep, a.ttl)
return 1
