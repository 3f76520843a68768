"""The Responses API's WebSocket mode frames the HTTP stream's events (test_responses.py, beside it) as
the socket's messages: each validated by the `openai` SDK's union of WebSocket server events."""

import json
from typing import Any

import pytest
from openai.types.responses.responses_server_event import ResponsesServerEvent
from pydantic import TypeAdapter

from tests.unit.gateway.protocols.responses.test_responses import HEADER
from tests.unit.gateway.protocols.test_ui_protocols import EVENTS, RUN, stored
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.responses.render import ResponseEvents
from tokentail.gateway.protocols.responses.socket import socket_message
from tokentail.gateway.reading.feed import Batch
from tokentail.shared.vocabulary.events import Gap

pytestmark = pytest.mark.responses


SERVER_EVENT = TypeAdapter[Any](ResponsesServerEvent)


def messages(stream_id: str | None, gap: Gap | None = None) -> list[dict[str, Any]]:
    events = ResponseEvents(RUN, 0, HEADER)
    parts = events.opening(gap)
    parts += [part for rendered, _ in events.rendered(Batch([Chunk(stored(EVENTS))])) for part in rendered]
    sent = [json.loads(socket_message(part, stream_id)) for part in parts]
    for message in sent:
        SERVER_EVENT.validate_python(message)
    return sent


def test_a_lane_s_events_are_the_http_stream_s_with_its_stream_id() -> None:
    on_lane, on_default = messages("lane-1"), messages(None)
    assert all(message.pop("stream_id") == "lane-1" for message in on_lane)
    assert on_lane == on_default and on_default[-1]["type"] == "response.completed"
    assert [m["sequence_number"] for m in on_default] == list(range(len(on_default)))


def test_a_gap_is_an_error_event_of_the_socket_s_shape() -> None:
    first = messages("l", Gap(reason="trimmed", first_available=40))[0]
    assert first["type"] == "error" and first["sequence_number"] == 0 and first["stream_id"] == "l"
    assert first["error"]["code"] == "gap" and "trimmed" in first["error"]["message"]
