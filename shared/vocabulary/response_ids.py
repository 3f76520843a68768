"""Ids made of a session's and a run's ids, so that any gateway finds them, and the worker names them
in webhooks, with no lookup; as unguessable as a session id.

- The Responses API's (gateway/protocols/responses/routes.py): a response is a run's segment, its part after
  its `segment`-th answer.
- The agent protocols' tasks (MCP's, A2A's: gateway/commands/tasks.py): a task is a run.
"""

import re

RESPONSE_PREFIX = "resp_"
_TASK_ID = re.compile(r"(s_[A-Za-z0-9_-]{22})(r_[A-Za-z0-9_-]{12})")
_RESPONSE_ID = re.compile(r"resp_(s_[A-Za-z0-9_-]{22})(r_[A-Za-z0-9_-]{12})(?:\.([1-9][0-9]{0,5}))?")


def response_id(session_id: str, run_id: str, segment: int = 0) -> str:
    """The id of `run_id`'s segment `segment` in session `session_id`."""
    return f"{RESPONSE_PREFIX}{session_id}{run_id}" + (f".{segment}" if segment else "")


def parse_response_id(value: str) -> tuple[str, str, int] | None:
    """The session id, run id and segment of a response id; None if it is not one."""
    match = _RESPONSE_ID.fullmatch(value)
    if match is None:
        return None
    return match[1], match[2], int(match[3] or 0)


def task_id(session_id: str, run_id: str) -> str:
    """The id of the task that `run_id` of session `session_id` is: both ids, one after the other."""
    return session_id + run_id


def parse_task_id(value: str) -> tuple[str, str] | None:
    """The session id and run id of a task id; None if it is not one."""
    match = _TASK_ID.fullmatch(value)
    return None if match is None else (match[1], match[2])
