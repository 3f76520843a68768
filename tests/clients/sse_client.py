"""A small SSE reader for tests, on httpx2's built-in parser."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2


@dataclass
class Received:
    status: int
    events: list[tuple[int | None, str, dict[str, Any]]]  # (id, event, data); gap frames have no id
    retry: int | None = None

    @property
    def ids(self) -> list[int]:
        return [event_id for event_id, _, _ in self.events if event_id is not None]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for _, event, data in self.events if event == kind]


async def read_events(
    client: httpx2.AsyncClient,
    url: str,
    *,
    last_event_id: int | None = None,
    via: str = "header",
    limit: int | None = None,
    on_event: Callable[[tuple[int | None, str, dict[str, Any]]], None] | None = None,
) -> Received:
    """Read until the server closes the stream, or until `limit` events with ids, then drop the connection.
    `on_event` sees each event as it arrives."""
    headers = {}
    params = {}
    if last_event_id is not None:
        if via == "header":
            headers["Last-Event-ID"] = str(last_event_id)
        else:
            params["last_event_id"] = str(last_event_id)
    received = Received(status=0, events=[])
    async with client.sse(url, headers=headers, params=params or None) as source:  # {} would drop the query
        received.status = source.response.status_code
        if received.status != 200:
            await source.response.aread()
            return received
        async for sse in source:
            if sse.retry is not None and received.retry is None:
                received.retry = sse.retry
            if not sse.data:
                continue
            event_id = int(sse.id) if sse.id and sse.event != "gap" else None
            event = (event_id, sse.event, json.loads(sse.data))
            received.events.append(event)
            if on_event is not None:
                on_event(event)
            if limit is not None and len(received.ids) >= limit:
                break
    return received
