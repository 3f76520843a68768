"""Fixtures shared by all tests come from plugin modules (tests/fixtures/), registered here, the one place
pytest reads `pytest_plugins` from: import a fixture nowhere, name it as an argument."""

pytest_plugins = [
    "tests.fixtures.real_redis",  # redis_url, private_redis_url, settings, redis, store, runs
    "tests.fixtures.redis_cluster",  # cluster (a local Redis Cluster), cluster_queue_url, cluster_settings, ...
    "tests.fixtures.stack",  # the in-process stack: start_gateway, start_worker, gateway, worker, client
    "tests.fixtures.postgres",  # postgres (a server of the tests' own, migrated), archive_settings, archive
    "tests.fixtures.processes",  # no_process_left: every process a test starts is stopped when it ends
    "tests.fixtures.slow_machine",  # each test's time limit, stretched on a loaded machine
    "tests.fixtures.traces",  # exported: traces on, into memory, for one test
    "tests.fixtures.limits_clock",  # limits_clock: the tenant limits' clock, held still
    "tests.fixtures.gates",  # gates: runs held at an instant until the test releases them (tests/support/gates.py)
    "tests.fixtures.tool_runs",  # tool_runs: the file the counting calculators note each of their runs in
    "tests.fixtures.chromium",  # browser: the session's headless Chromium, a connection of the test's own
    "pytester",  # pytest's own, to test the plugins above
]
