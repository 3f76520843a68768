"""The operator console's side of the gateway: `/v1/admin/...` and the `/console` page (docs/console.md).
Reads indexes and pages only (shared/store/run_index.py, shared/features/workers.py, the admission keys),
and acts through the commands the API uses. May import the core (access, reading, commands, deps, schemas,
errors), never a protocol.

access     who may look: admin keys, tenant keys (their own tenant), loopback with auth off
models     the JSON the admin API answers (its OpenAPI schema)
runs       runs as the console lists them: the index's pages, a session's runs and transcript
timeline   one run's life on one time axis, from its record and its events
overview   tenants' lines and caps, workers, throughput, recent failures and takeovers
live       the console's own SSE stream: overview and timeline snapshots, coalesced
routes     the routes, and the actions, each logged with who
"""
