"""No request is both carried out and refused, behind deploy/nginx.conf: nginx reads a client's whole
body, then passes it on to a gateway in reads of its own, so a body of 64 KiB to 1 MiB reached the
gateway's head bound there too (431 after the session was created or the run queued). The same
invariant as tests/integration/test_request_invariant.py, through the nginx front of
docker-compose.yml's services run as local processes (tests/deploy/stack.py)."""

import json
from collections.abc import AsyncIterator

import httpx2
import pytest
from redis.asyncio import Redis

from tests.deploy.stack import LocalCompose, environment_of
from tests.integration.test_request_invariant import (
    KIB,
    MAX_REQUEST_BYTES,
    MIB,
    assert_done_once_or_not_at_all,
    create_session,
    exchange,
    queue_run,
)

SIZES = {
    "64KiB": 64 * KIB,
    "64KiB+1": 64 * KIB + 1,
    "100KiB": 100 * KIB,
    "512KiB": 512 * KIB,
    "1MiB-1KiB": MIB - KIB,
    "1MiB": MIB,  # TOKENTAIL_MAX_REQUEST_BYTES: the largest body accepted
}


@pytest.fixture
async def stack_redis(compose: LocalCompose) -> AsyncIterator[Redis]:
    """A client of the stack's Redis, where the gateways record sessions."""
    (redis,) = compose.replicas["redis"]
    client = Redis(host="127.0.0.1", port=redis.port)
    yield client
    await client.aclose()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("write", ["create-session", "queue-run"])
async def test_a_write_through_nginx_is_answered_2xx_and_done_once_or_refused_and_not_done(
    compose: LocalCompose, stack_redis: Redis, write: str, size: int
) -> None:
    (nginx,) = compose.replicas["nginx"]
    key_prefix = environment_of(compose.services["gateway"])["TOKENTAIL_KEY_PREFIX"]
    assert key_prefix, "docker-compose.yml names the gateways' key prefix"
    async with httpx2.AsyncClient(base_url=nginx.url, timeout=30) as http:
        if write == "create-session":
            planned = create_session(stack_redis, key_prefix, size)
        else:
            planned = await queue_run(http, size)
        answer, follow_up = await exchange(nginx.port, "in-one-write", planned.request, planned.follow_up)
        what = f"{write} with a body of {size} bytes, through nginx"
        await assert_done_once_or_not_at_all(what, answer, planned.recorded)  # runs_of() reads with `http`
    assert follow_up is not None and follow_up[0] == 200, f"{what}: the pipelined request after it: {follow_up}"
    assert answer[0] == planned.accepted, f"{what}: {answer[1][:300]!r}"


async def test_bodies_over_the_limit_through_nginx_are_refused_and_not_done_and_leave_every_gateway_in(
    compose: LocalCompose, stack_redis: Redis
) -> None:
    """The gateway reads an oversized body to its end before its 413: it closed the connection under
    nginx's write, which nginx answered 502, taking that gateway out of rotation for 10 s (two such
    requests left it no gateway at all)."""
    (nginx,) = compose.replicas["nginx"]
    key_prefix = environment_of(compose.services["gateway"])["TOKENTAIL_KEY_PREFIX"]
    assert key_prefix
    for size in (MAX_REQUEST_BYTES + 1, 2 * MAX_REQUEST_BYTES):  # under nginx's client_max_body_size (2m)
        for _ in range(3):
            planned = create_session(stack_redis, key_prefix, size)
            answer, follow_up = await exchange(nginx.port, "in-one-write", planned.request, planned.follow_up)
            what = f"create-session with a body of {size} bytes, through nginx"
            await assert_done_once_or_not_at_all(what, answer, planned.recorded)
            assert answer[0] == 413 and json.loads(answer[1])["error"]["type"] == "input_too_large", answer
            assert follow_up is not None and follow_up[0] == 200, f"{what}: the request after it: {follow_up}"
