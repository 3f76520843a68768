"""The tests' own machinery, imported by tests, fixtures and agents alike: waiting for state no test is
told about (`eventually`, and every bound stretched on a loaded machine), gates that hold a run at an
instant until the test releases it (and `held`, the agent that waits at one), sessions and runs made as
the tests need them, both sides of the write side on one object, and what the write side's tests check
with it (write_side.py). The pytest fixtures built on them are plugins in tests/fixtures/."""
