"""What the gateway and the worker share, in five rooms. Each imports only the rooms listed above it
here (tests/unit/project/test_layout.py `SHARED_PARTS` keeps it so, and no room may import the gateway or the
worker):

vocabulary/    a session's words: events, records, the run log, params, the catalog, errors, ids
plumbing/      the process's plumbing: settings, Redis URLs, logs, traces, metrics, garbage collection
connections/   Redis connections: the clients of a topology, joined round trips, riding out an outage
store/         the session store: its keys, reads, writes, the archive, the checks indexes, and the
               Lua scripts (lua/) with their contracts (scripts/), the only way anything changes
features/      what several processes do together: fair admission, webhooks and task pushes, the
               agent catalog
"""
