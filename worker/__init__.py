"""The arq worker: runs agents and appends their events to session streams. Its parts, each importing
only those above it here (tests/unit/project/test_layout.py `WORKER_PARTS`):

agent_errors the exceptions an agent meets, drawn as a tree (`from tokentail import ChildFailed, ...`)
event_sink   what an agent writes to: its run (RunContext) or an inline child (InlineChild), as a Protocol
metrics      the worker's Prometheus metrics
running      the runs this process executes, and why one was stopped: what a run and the process share
tools/       tools: typed Python functions a model may call, and the built-in ones
providers/   model providers (OpenAI, Anthropic, OpenAI-compatible, the offline scripted model)
writes/      what a run writes while a worker holds it: the writer, the ticks of appends, the lease
run/         one run: its job, attempt, context, agents, agent loop, children, retry, recovery
process/     the process around the runs: arq, its main, reaper, archiver, webhook delivery, probe,
             watchdog
"""
