"""`python tests/support/measured_start.py <tokentail command> [options]`: a tokentail process a test
starts (tests/e2e/conftest.py's `Stack`), measured by coverage from after its imports, not during them.

Under `coverage run` (./scripts/test), every Python process a test starts is measured from its first
line (coverage's subprocess patch: `COVERAGE_PROCESS_CONFIG`). Tracing the imports of a gateway costs
a third more of a core than the imports themselves (1.8 against 1.3 s to `/readyz`), and the suite
starts hundreds of them; what those imports run (module bodies) the pytest processes measure anyway,
as they import the same modules. So a stack's process gets the configuration under another name
(`command`), imports what its command will, and only then starts coverage as the patch would have,
with the configuration put back for the processes it starts in turn.
"""

import os
import runpy
import sys

DEFERRED = "TOKENTAIL_TEST_COVERAGE_CONFIG"  # coverage's COVERAGE_PROCESS_CONFIG, kept from the patch's hook
IMPORTS = {"gateway": "tokentail.gateway.server", "worker": "tokentail.worker.process.main"}


def command(args: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """How to start `tokentail <args>` with `env`: through this module when coverage measures
    subprocesses, else as users do (`python -m tokentail.cli`)."""
    if "COVERAGE_PROCESS_CONFIG" not in env:
        return [sys.executable, "-m", "tokentail.cli", *args], env
    deferred = {name: value for name, value in env.items() if name != "COVERAGE_PROCESS_CONFIG"}
    deferred[DEFERRED] = env["COVERAGE_PROCESS_CONFIG"]
    return [sys.executable, __file__, *args], deferred


def main() -> None:
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = os.getcwd()  # as `python -m` has it: not this folder, the working directory
    if (module := IMPORTS.get(sys.argv[1] if len(sys.argv) > 1 else "")) is not None:
        __import__(module)
    if (config := os.environ.pop(DEFERRED, None)) is not None:
        os.environ["COVERAGE_PROCESS_CONFIG"] = config
        import coverage

        coverage.process_startup()
    sys.argv[0] = "tokentail"
    runpy.run_module("tokentail.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
