"""The session store: every Redis key, what is read from them, and the only way they change (a Lua
script, called by its contract; the indexes and counts that change no session, by plain commands
here). Outside shared/, only the gateway's live reading room sends Redis a command: everything else
asks the store (tests/unit/project/test_layout.py). May import the connections, the plumbing and the vocabulary.

keys           every Redis key tokentail uses, built in one place
jobs           the arq job that runs a session's run, and its wire format
reads          the store's reads: session records, stream positions, events
writes         the write side's common ground: the runner, with a deployment's policies around it
archive        sessions in PostgreSQL, under the ids they had in Redis (optional)
lease_index    where reapers find the runs that may have lost their worker, or their job
webhook_index  where deliverers find the sessions with webhook events to post, and what they read of one
archive_index  where the archiver finds the sessions with events to archive
run_index      the runs the operator console lists and searches, newest first
client_indexes beside it, by the names clients give: A2A's tasks, AG-UI's client runs, a chat's branch
run_tree       a session's tree of runs in Redis: a run's lane, the cancel of its descendants
tenant_counts  the counts of a tenant's use kept by plain commands: spawns a minute, stream slots
scripts/       each Lua script's contract (keys, arguments, reply) and the runner that calls them
lua/           the scripts themselves, and lib/: the helpers every script is sent with
"""
