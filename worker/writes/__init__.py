"""The worker's write side: what one run writes to Redis while a worker holds it, and how every run's
appends of the process go out together. May import the worker's agent_errors and metrics, and shared/;
never run/ nor process/, which drive it.

writer       the event writer of one attempt: coalesces deltas, keeps appends in order
appends      every run's appends of the process, sent and settled a tick at a time (`AppendTicks`)
run_writes   the writes on a run the worker holds (`RunLease`): claim, append, ask, record, end
lease        keeps a run's lease alive while it streams (`LeaseKeeper`)
steer_inbox  what an attempt knows of its steers without asking Redis
lost_writes  the journal of a run's last appends, appended again when Redis lost them
"""
