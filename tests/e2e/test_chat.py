"""`tokentail chat` in a script (stdin not a terminal) against a gateway and a worker whose agent asks
a question (tests/agents/asking_agent.py): it answers with `--answer`, or says how to answer and exits 3."""

import json
import re
import subprocess
import sys

from tests.e2e.conftest import Stack
from tests.support.waiting import scaled

AGENTS = json.dumps({"approve": "tests.agents.asking_agent:approval", "two": "tests.agents.asking_agent:two_questions"})


def _chat(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`tokentail chat --url url arguments`, its stdin not a terminal, as in a script or CI."""
    return subprocess.run(
        [sys.executable, "-m", "tokentail.cli", "chat", "--url", url, *arguments],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )


def _stack(stack: Stack) -> str:
    stack.env["TOKENTAIL_AGENTS"] = AGENTS
    url = stack.gateway()
    stack.worker()
    stack.wait_for_workers(1)
    return url


def test_with_no_terminal_a_question_is_said_with_how_to_answer_it_and_the_command_exits(stack: Stack) -> None:
    # It waited forever: "[waiting for an answer to in_...: POST .../runs/r_.../input]", then nothing.
    url = _stack(stack)
    asked = _chat(url, "--agent", "approve", "clean up")
    assert asked.returncode == 3, asked.stderr
    assert asked.stdout == "Checking. "
    found = re.search(r"session (s_\S+), run (r_\S+), input_id (in_\S+)", asked.stderr)
    assert found, asked.stderr
    session_id, run_id, input_id = found.groups()
    command = f"tokentail chat --url {url} --session {session_id} --answer yes"
    assert command in asked.stderr
    assert f"{url}/v1/sessions/{session_id}/runs/{run_id}/input" in asked.stderr
    assert f'"input_id": "{input_id}", "answer": {{"approved": true}}' in asked.stderr
    # As it says: the session replayed, its question answered, the run followed to its end.
    answered = _chat(url, "--session", session_id, "--answer", "yes")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout == "Checking. Done: deleted.\n"
    assert "[answered: {'approved': True}]" in answered.stderr
    # Replayed again: the question was answered, so no --answer is needed, and nothing is asked.
    replayed = _chat(url, "--session", session_id)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == answered.stdout


def test_answers_given_up_front_answer_the_questions_in_the_order_asked(stack: Stack) -> None:
    url = _stack(stack)
    denied = _chat(url, "--agent", "approve", "--answer", "no", "clean up")
    assert denied.returncode == 0, denied.stderr
    assert denied.stdout == "Checking. Done: kept.\n"
    both = _chat(url, "--agent", "two", "--answer", "blue", "--answer", "3", "paint")
    assert both.returncode == 0, both.stderr
    assert both.stdout == "blue it is. 3 of them.\n"
    # An answer the question refuses is said; with no terminal and no answer left, the command exits 3.
    refused = _chat(url, "--agent", "two", "--answer", "green", "paint")
    assert refused.returncode == 3, refused.stderr
    assert "green" in refused.stderr and "not one of" in refused.stderr, refused.stderr
    assert "--answer red" in refused.stderr  # a choice's example: its first


def test_the_built_in_careful_agent_asks_offline_and_two_questions_open_at_once_are_both_named(
    stack: Stack,
) -> None:
    # No agent configured: the built-in `careful` with the offline model, as the README shows it. Two
    # calculations are two calls in one turn, so two approvals open at once: both are named, with one
    # `--answer` each (the command named one and suggested one `--answer`).
    url = stack.gateway()
    stack.worker()
    stack.wait_for_workers(1)
    asked = _chat(url, "--agent", "careful", "What is 12 * 7 and 6 * 7?")
    assert asked.returncode == 3, asked.stderr
    found = re.findall(r"session (s_\S+), run (r_\S+), input_id (in_\S+): (Run calculator .*\?)", asked.stderr)
    assert [prompt for *_, prompt in found] == [
        'Run calculator {"expression": "12 * 7"}?',
        'Run calculator {"expression": "6 * 7"}?',
    ], asked.stderr
    session_id = found[0][0]
    command = f"tokentail chat --url {url} --session {session_id} --answer yes --answer yes"
    assert command in asked.stderr
    assert asked.stderr.count(f"curl -X POST {url}/v1/sessions/{session_id}/runs/") == 2
    answered = _chat(url, "--session", session_id, "--answer", "yes", "--answer", "no")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout == (
        "Let me calculate that. The calculator says 84."
        " The calculator could not work that out: the user did not approve this call.\n"
    )
