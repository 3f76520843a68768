"""The worker process around its runs: arq in its role, what starts and stops runs, and what the
process does beside them. May import every other part of the worker.

main              the worker process: its arq Worker, steer and cancel listeners, start and close
arq_shell         arq in its role: job tasks, aborts, heartbeats (borrowed from arq, and pinned)
reaper            finds runs whose worker died, and queues them for another worker
archiver          copies sessions to the archive so that Redis may forget them
webhook_delivery  posts what the sessions' hooks lists hold, in order
probe             /healthz, /readyz and /metrics
watchdog          finds the run that blocks the event loop, says so, and ends it
beacon            the process's heartbeat for the operator console: alive, its runs, its throughput
"""
