"""A session's vocabulary: what its events, records and runs are, in words every process and client
shares. Pure data and the rules on it: no Redis client, no settings, no I/O; imports nothing else of
tokentail.

events        the events of a session stream: names, data, ids (docs/api.md)
records       what Redis keeps about a session and its runs, and the transcript derived from it
run_log       a run's events as its clients keep them: what a takeover or a resume goes on from
run_tree      a session's tree of runs: the runs below a run, and those a follower of one reads
params        the sampling knobs a run may carry
catalog       what a request may name: models and agents
errors        tokentail's exceptions (the gateway maps them to HTTP statuses)
response_ids  ids made of a session's and a run's ids (responses, tasks)
"""
