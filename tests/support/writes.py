"""Both sides of the write side on one object: tests and benchmarks play the gateway (create,
queue, answer, cancel) and the worker (start, append) on the same sessions."""

from tokentail.gateway.commands.writes import SessionWrites
from tokentail.worker.writes.run_writes import RunWrites


class AllWrites(SessionWrites, RunWrites):
    pass


class Died(BaseException):
    """A process dying at this instant, raised where a test makes it die: a BaseException, so that no
    retry of the process's own (shared/connections/outage.py's ride_out) catches it, as none would run."""
