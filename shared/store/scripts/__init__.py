"""The Lua scripts' contracts (one typed class per script) and the runner that calls them. May import
the store's other modules (keys, reads, jobs, the indexes), the connections, the plumbing and the
vocabulary.

contract  a script's contract, declared once in Python: its keys, its arguments and its reply
reply     a script's reply, declared as its arguments are: what each outcome carries, by name
runner    calls scripts by their contracts on the sessions' Redis or the queue's
policies  what a deployment adds around some scripts, wrapped once around the runner at start-up
runs      the scripts that change a session's runs: queue, start, append, ask, answer, cancel, renew
sessions  the scripts that make, copy, bring back and delete a session
children  the scripts that start a run's children and wait for them
checks    the scripts of the checks indexes (leases, webhooks, archive) and of those who work through them
pickup    the scripts by which a worker claims and finishes arq jobs
limits    the scripts that count a tenant's use across gateways
"""
