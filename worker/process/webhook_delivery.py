"""Delivers webhook events: each worker posts what its sessions' `hooks` lists hold, in order.

Each pass claims the sessions the webhooks index says are due (shared/store/webhook_index.py), and posts
each session's events one by one, oldest first, signed (shared/features/webhook_messages.py). One tenant, and
one receiving host, gets at most a share of a worker's posting slots (a session beyond it is looked
at again a little later), and an attempt has a deadline as a whole, of which only the answer's status
is read: so a tenant whose receivers trickle, hang or answer without end delays only its own. An
event leaves its list once a receiver answers 2xx; any other answer, a timeout, a refused
connection, or any other error of the attempt (a request no HTTP client can send) leaves it at the
head, each URL's failure its own (the URLs that took it are not posted it again), and the session is
looked at again after a delay that grows with the event's age (1 s, then half its age, at most
15 min), until `webhook_retry_seconds` have passed: then it is dropped and counted `gave_up`. A
deliverer that dies mid-post leaves its claim to lapse; another posts the event again, with the same
`webhook-id`: delivery is at least once, and receivers drop repeats by id.
Nothing here is on a run's path: a run only adds to its session's list.
"""

import asyncio
import json
import logging
import random
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx2
from redis import exceptions as redis_errors

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.features.a2a_push import PushConfigs, push_body
from tokentail.shared.features.tenant_webhooks import TenantWebhooks
from tokentail.shared.features.webhook_messages import Hook, sign
from tokentail.shared.features.webhook_policy import WebhookPolicy
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import read_run
from tokentail.shared.store.scripts.checks import DropHook, HooksKey
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.store.webhook_index import Claim, SessionHooks, WebhookIndex
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.worker import metrics

logger = logging.getLogger(__name__)

CONCURRENCY = 16  # sessions posted to at once per worker process
# Of those, at most so many for one tenant, and to one host: one tenant's slow receivers (or one slow
# host) hold only their own share, and another tenant's webhooks go out meanwhile.
PER_TENANT = 4
PER_HOST = 4
IDLE_SECONDS = 0.25  # between passes that found nothing due
MAX_DELAY_SECONDS = 900.0


def retry_delay(age_seconds: float) -> float:
    """Seconds before the next attempt at an event this old: 1 s, then half its age, at most 15 min."""
    return min(MAX_DELAY_SECONDS, max(1.0, age_seconds / 2)) * random.uniform(0.9, 1.1)


class WebhookDeliverer:
    def __init__(self, sessions: AnyRedis, index: WebhookIndex, settings: Settings) -> None:
        self._redis = sessions
        self._index = index
        self._keys = Keys(settings.key_prefix)
        self._hooks = SessionHooks(sessions, self._keys)
        self._tenants = TenantWebhooks(sessions, self._keys)
        self._pushes = PushConfigs(sessions, self._keys, settings.session_ttl_seconds)
        self._policy = WebhookPolicy(settings.webhook_allowed_urls)
        self._retry_seconds = settings.webhook_retry_seconds
        # One deliverer at a time posts a session's events, for at most half its claim: time for a
        # few slow receivers. A dead deliverer's sessions come due again when the claim lapses.
        self._claim_ms = int(6_000 * settings.webhook_timeout_seconds)
        self._timeout = settings.webhook_timeout_seconds
        # Redirects are not followed: a receiver could otherwise send the worker past the allowlist.
        self._http = httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False)
        self._posting = Counter[str]()  # sessions being posted to, by "tenant:<t>" and "host:<h>"
        self._scripts = ScriptRunner(sessions, Topology.of(settings))

    async def run_forever(self) -> None:
        """Claim due sessions as posting slots free up: a slow receiver holds one slot, not a pass."""
        posting: set[asyncio.Task[None]] = set()
        failing = False
        try:
            while True:
                free = CONCURRENCY - len(posting)
                if not free:
                    await asyncio.wait(posting, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    claimed = await self._index.claim(free, self._claim_ms)
                except (redis_errors.RedisError, OSError) as exc:
                    if not failing:
                        logger.warning("webhooks paused: Redis failed (%s: %s)", type(exc).__name__, exc)
                    failing = True
                    await asyncio.sleep(1)
                    continue
                if failing:
                    logger.warning("webhooks: Redis is back")
                failing = False
                for claim in claimed:
                    task = asyncio.create_task(self._post_session(claim))
                    posting.add(task)
                    task.add_done_callback(posting.discard)
                if len(claimed) < free:  # none left due
                    await asyncio.sleep(IDLE_SECONDS)
        finally:
            for task in posting:
                task.cancel()
            await asyncio.gather(*posting, return_exceptions=True)

    async def close(self) -> None:
        await self._http.aclose()

    async def _post_session(self, claim: Claim) -> None:
        try:
            await self._deliver_session(claim)
        except (redis_errors.RedisError, OSError) as exc:  # its claim lapses: another pass posts again
            logger.warning("webhooks of session %s: Redis failed (%s: %s)", claim.session_id, type(exc).__name__, exc)

    async def _deliver_session(self, claim: Claim) -> None:
        hooks_key = self._keys.session(claim.session_id).hooks
        first = await self._hooks.first(claim.session_id)
        shares = _shares(first) if first is not None else []
        if any(self._posting[share] >= limit for share, limit in shares):
            # Its tenant (or host) has its share of this worker's slots: look again once one may be free.
            await self._index.settle(claim, int((time.time() + self._timeout * random.uniform(0.5, 1)) * 1000))
            return
        for share, _ in shares:
            self._posting[share] += 1
        try:
            await self._post_hooks(claim, hooks_key)
        finally:
            for share, _ in shares:
                self._posting[share] -= 1
                if not self._posting[share]:
                    del self._posting[share]  # tenants and hosts come and go: keep only the busy ones

    async def _post_hooks(self, claim: Claim, hooks_key: str) -> None:
        started = time.monotonic()
        while time.monotonic() - started < self._claim_ms / 2000:
            raw = await self._hooks.first(claim.session_id)
            if raw is None:
                await self._index.settle(claim)
                return
            try:
                hook = Hook.parse(claim.session_id, raw)
            except (ValueError, KeyError, TypeError):  # not one this version wrote: never deliverable
                logger.error("webhooks of session %s: dropped an unreadable entry %r", claim.session_id, raw[:200])
                await self._scripts(DropHook(HooksKey(hooks_key), raw))
                continue
            if not await self._deliver(hook):
                age = time.time() - hook.ts_ms / 1000
                await self._index.settle(claim, int((time.time() + retry_delay(age)) * 1000))
                return
            await self._scripts(DropHook(HooksKey(hooks_key), raw))
        await self._index.settle(claim, int(time.time() * 1000))  # more to post: due again now

    async def _run_of(self, hook: Hook) -> RunRecord | None:
        """The record of the hook's run, for an entry that does not keep its segment (an older version's)."""
        return await read_run(self._redis, self._keys.session(hook.session_id), hook.run_id)

    async def _deliver(self, hook: Hook) -> bool:
        """Post one event, to its session's URL and to its A2A task's push configs; True once it is
        done with (delivered everywhere, or dropped for good)."""
        age = time.time() - hook.ts_ms / 1000
        if age > self._retry_seconds:
            logger.warning(
                "webhook %s (%s) to %s given up: not accepted within %d s",
                hook.webhook_id,
                hook.type,
                hook.url or "A2A push configs",
                self._retry_seconds,
            )
            metrics.WEBHOOK_DELIVERIES.labels("gave_up").inc()
            return True
        tenant = await self._tenants.get(hook.tenant)
        posts: list[tuple[str, bytes, dict[str, str]]] = []
        if hook.url and tenant.format == "tokentail":
            posts.append((hook.url, hook.body(), {"content-type": "application/json"}))
        elif hook.url and not hook.asks_more:  # OpenAI's response completes once, at the last question
            # An entry of an older version does not keep its segment: its run's record tells.
            body = hook.openai_body(await self._run_of(hook) if hook.segment is None else None)
            posts.append((hook.url, body, {"content-type": "application/json"}))
        if hook.task_push:
            configs = await self._pushes.of_run(hook.session_id, hook.run_id)
            posts += [(config.url, push_body(hook), config.headers()) for config in configs]
        if len(posts) < 2:
            return all([await self._post(hook, tenant.secret, *post) for post in posts])
        # To several URLs: those that took it are remembered, so that a retry for the others does not
        # post it to them again.
        done = await self._hooks.posted_to(hook.session_id, hook.webhook_id)
        posts = [post for post in posts if post[0] not in done]
        posted = await asyncio.gather(*(self._post(hook, tenant.secret, *post) for post in posts))
        if all(posted):
            await self._hooks.all_posted(hook.session_id, hook.webhook_id)
            return True
        if accepted := [post[0] for post, ok in zip(posts, posted, strict=True) if ok]:
            await self._hooks.note_posted(hook.session_id, hook.webhook_id, accepted, self._retry_seconds + 3600)
        return False

    async def _post(self, hook: Hook, secret: str, url: str, body: bytes, extra: dict[str, str]) -> bool:
        """Post the hook's event to one URL; True once it is done with there. Whatever fails in the
        attempt fails this delivery alone: the hook's other URLs (gathered beside it) are posted, and
        those that took it remembered, whatever this one raises."""
        if not self._policy.allows(url):  # the operator narrowed the allowlist since
            logger.warning("webhook %s dropped: %s is no longer an allowed URL", hook.webhook_id, url)
            metrics.WEBHOOK_DELIVERIES.labels("not_allowed").inc()
            return True
        age = time.time() - hook.ts_ms / 1000
        try:
            timestamp = int(time.time())
            headers = {
                **extra,
                "user-agent": "tokentail-webhooks",
                "webhook-id": hook.webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, hook.webhook_id, timestamp, body),
            }
            # A deadline for the whole attempt, not only each read (a receiver trickling its answer
            # would hold the slot for ever); and only the status is read, never the body (a receiver
            # answering a gigabyte would have it in the worker's memory).
            async with (
                asyncio.timeout(self._timeout),
                self._http.stream("POST", url, content=body, headers=headers) as response,
            ):
                status = response.status_code
        except (httpx2.HTTPError, TimeoutError) as exc:  # the receiver's doing, or the network's
            failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # not the receiver's: a request no HTTP client can send (a config stored
            # before its token was checked: shared/features/a2a_push.py), or a bug. Retried as any failure, and said.
            logger.warning(
                "webhook %s (%s) to %s could not be sent; retried", hook.webhook_id, hook.type, url, exc_info=exc
            )
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            return False
        else:
            if 200 <= status < 300:
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                metrics.WEBHOOK_DELAY.observe(max(0.0, age))
                return True
            failure = f"HTTP {status}"
        logger.info("webhook %s (%s) to %s not accepted (%s); retried", hook.webhook_id, hook.type, url, failure)
        metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
        return False


def _shares(raw: bytes) -> list[tuple[str, int]]:
    """The shares of the slots a session's webhooks count against, from its first entry."""
    try:
        entry = json.loads(raw)
        shares = [(f"tenant:{entry['tenant']}", PER_TENANT)]
        if entry["url"]:  # none for a session with A2A push configs only: their hosts are many
            shares.append((f"host:{urlsplit(entry['url']).netloc}", PER_HOST))
        return shares
    except (ValueError, KeyError, TypeError):  # unreadable: the delivery drops it
        return []
