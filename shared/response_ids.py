"""The Responses API's ids (gateway/routes/responses.py): a response is a run's segment, its part
after its `segment`-th answer, and its id is made of the session's and the run's ids, so the gateway
finds them, and the worker names them in webhooks, with no lookup; as unguessable as a session id."""

import re

RESPONSE_PREFIX = "resp_"
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
