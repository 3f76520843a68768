"""Faults and logs of the joined round trips (shared/connections/round_trips.py), made where a test
needs them: what a round trip writes, a reply lost after Redis ran its command, a round trip broken."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis import exceptions as redis_errors

from tokentail.shared.connections import round_trips as module
from tokentail.shared.connections.round_trips import Joined, RoundTrips


def log_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, int]]:
    """Every round trip written from now on, in order: its buffer, and how many commands it holds."""
    written: list[tuple[bytes, int]] = []
    send = module._Replies.send

    def logged(self: Any, data: bytes, owed: int) -> None:
        written.append((data, owed))
        send(self, data, owed)

    monkeypatch.setattr(module._Replies, "send", logged)
    return written


def one_connection(trips: Joined) -> RoundTrips:
    """The round trips of one connection (a cluster's are those of one node: `ClusterRoundTrips.node`)."""
    assert isinstance(trips, RoundTrips), trips
    return trips


def lose_replies(monkeypatch: pytest.MonkeyPatch, joined: Joined, rounds: int = 1) -> list[int]:
    """The replies of the next `rounds` round trips are lost after Redis ran their commands, as when a
    connection is cut on the way back: each of their callers fails with ConnectionError. The list
    returned grows by one at each loss."""
    trips = one_connection(joined)
    lost: list[int] = []
    replied = trips._replied

    def losing(link: Any, gets: Callable[[], Any]) -> None:
        if len(lost) == rounds:
            replied(link, gets)
            return
        lost.append(1)
        while gets() is not False:
            pass
        trips._lost(link, redis_errors.ConnectionError("Connection closed by server."))
        link.abort()

    monkeypatch.setattr(trips, "_replied", losing)
    return lost


def break_round_trips(monkeypatch: pytest.MonkeyPatch, joined: Joined, broken: asyncio.Event) -> None:
    """Until the patch is undone, every round trip fails before it reaches Redis (ConnectionError);
    `broken` is set at the first."""
    trips = one_connection(joined)

    def failing() -> None:
        trips._soon = False
        asked, trips._asked = trips._asked, []
        for future, _ in asked:
            if not future.done():
                future.set_exception(redis_errors.ConnectionError("Redis went away"))
        if asked:
            broken.set()

    monkeypatch.setattr(trips, "_send", failing)


def hold_replies(monkeypatch: pytest.MonkeyPatch, joined: Joined, release: asyncio.Event) -> None:
    """Redis answers once `release` is set: the replies that come before are held until then, as a
    slow Redis's would be."""
    trips = one_connection(joined)
    replied = trips._replied
    held: list[Any] = []
    waiting: list[asyncio.Future[None]] = []

    async def give(link: Any) -> None:
        await release.wait()
        handed, held[:] = [*held, False], []
        replied(link, iter(handed).__next__)

    def holding(link: Any, gets: Callable[[], Any]) -> None:
        while (reply := gets()) is not False:
            held.append(reply)
        if not waiting or waiting[-1].done():
            waiting.append(asyncio.ensure_future(give(link)))

    monkeypatch.setattr(trips, "_replied", holding)
