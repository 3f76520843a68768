"""tests/fixtures/processes.py: a test that leaves a process running errors, and the process is killed;
one that stops what it started, or a wider fixture's server, is left alone."""

import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_a_process_left_running_is_killed_and_fails_its_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.fixtures.processes"]')
    marker = f"left-by-a-test-{os.getpid()}"
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import subprocess, sys
            import pytest

            @pytest.fixture(scope="session")
            def server():
                process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                yield process
                process.kill()
                process.wait()

            def test_leaves_one(server):
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{marker}"])

            def test_stops_what_it_starts(server):
                process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                process.kill()
                process.wait()
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--rootdir={pytester.path}")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.re_match_lines([r".*ERROR at teardown of test_leaves_one.*"])
    result.stdout.fnmatch_lines([f"*left 1 processes running (killed now)*{marker}*"])
    assert not [pid for pid in _pids() if marker in _command(pid)]  # (orphaned by the inner pytest, it would be init's)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner pytest imports the plugin from this repository."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TOKENTAIL_TEST_SLOWDOWN", "1")  # its grace for exiting processes: 5 s, not more
