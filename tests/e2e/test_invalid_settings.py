"""An invalid setting stops `tokentail dev`, `tokentail gateway` and `tokentail worker` at once with one
line naming the variable and its rule, and exit code 2: no traceback (issue 84: a 15-character admin key
killed `tokentail dev` with three, the gateway's and both workers'). dev checks once, before it starts
anything."""

import contextlib
import os
import signal
import subprocess
import sys

import pytest

from tests.support.waiting import scaled
from tokentail.redis_server import free_port

SHORT_KEY = "k" * 15


def _run(*command: str, **settings: str) -> tuple[int, str]:
    """`tokentail <command>` with `settings` (and no other TOKENTAIL_* of this machine): its exit code
    and what it wrote, stdout and stderr together."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOKENTAIL_")}, **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "tokentail.cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # whatever it starts goes with it below
    )
    try:
        output, _ = process.communicate(timeout=scaled(60))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return process.returncode, output.decode()


@pytest.mark.parametrize("command", ["dev", "gateway", "worker"])
def test_a_short_admin_key_is_one_line_and_exit_code_2(command: str) -> None:
    code, output = _run(command, "--port", str(free_port()), TOKENTAIL_ADMIN_KEYS=f"ops:{SHORT_KEY}")
    assert (code, output.splitlines()) == (
        2,
        ["Error: TOKENTAIL_ADMIN_KEYS: key 1 (name 'ops') is shorter than 16 characters"],
    ), output
    assert SHORT_KEY not in output


def test_every_problem_is_a_line_of_its_own() -> None:
    code, output = _run(
        "gateway", "--port", str(free_port()), TOKENTAIL_MAX_CONCURRENT_CHILDREN="0", TOKENTAIL_AGENTS="{not json"
    )
    assert code == 2 and output.splitlines() == ["Error: TOKENTAIL_AGENTS: not valid JSON"], output
    code, output = _run("worker", "--port", "0", TOKENTAIL_MAX_CONCURRENT_CHILDREN="0", TOKENTAIL_STREAM_MAXLEN="5")
    assert code == 2, output
    assert sorted(output.splitlines()) == [
        "Error: TOKENTAIL_MAX_CONCURRENT_CHILDREN: Input should be greater than or equal to 1",
        "Error: TOKENTAIL_STREAM_MAXLEN: Input should be greater than or equal to 100",
    ], output
