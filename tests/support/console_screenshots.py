"""The console's screenshots for docs/console.md and the README, of a stack of real processes (a
redis-server, a gateway, workers: tests/e2e/conftest.py `Stack`) with realistic data: three tenants'
runs, one of them taken over after its worker was killed, with a tool call and a question answered from
the admin API; one tenant parked at its cap; a question left open. Shot in headless Chromium:

    .venv/bin/python -m tests.support.console_screenshots docs/images

writes console-overview.png and console-timeline.png there. First two minutes of traffic (three tenants'
paced runs, a few at once) fill the charts; `--traffic 0` leaves them out (half a minute in all)."""

import argparse
import asyncio
import itertools
import json
import random
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import httpx2
from playwright.async_api import Page, ViewportSize, async_playwright

from tests.e2e.conftest import Stack
from tests.fixtures.chromium import CHROMIUM_FLAGS
from tests.support.waiting import eventually

KEYS = {
    "acme": "acme-key-0123456789abcdef",
    "globex": "globex-key-0123456789abcdef",
    "initech": "initech-key-0123456789ab",
}
ADMIN = "ops-key-0123456789abcdef"
AGENTS = {
    "held": "tests.support.gates:held",
    "cleanup": "tests.agents.asking_agent:ask_then_go_on",
    "approve": "tests.agents.asking_agent:approval",
}
PACED = {"tokens": 160, "tokens_per_second": 80}
VIEWPORT: ViewportSize = {"width": 1440, "height": 1000}


async def _start(client: httpx2.AsyncClient, tenant: str, body: dict[str, Any]) -> tuple[str, str]:
    response = await client.post("/v1/sessions", json=body, headers={"Authorization": f"Bearer {KEYS[tenant]}"})
    response.raise_for_status()
    made = response.json()
    return made["session_id"], made["run_id"]


async def _completed(client: httpx2.AsyncClient, tenant: str, session_id: str) -> None:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"}

    async def done() -> bool:
        runs = (await client.get(f"/v1/sessions/{session_id}", headers=headers)).json()["runs"]
        return bool(runs[-1]["status"] == "completed")

    await eventually(done, within=60, what=f"session {session_id} completed")


async def _settled(page: Page, view: str) -> None:
    await page.wait_for_selector(f"body[data-view={view}]", timeout=30_000)
    await page.wait_for_selector("#live[data-state=live]", timeout=30_000)
    await page.wait_for_function("() => Number(document.body.dataset.liveEvents) > 0", timeout=30_000)


async def _traffic(client: httpx2.AsyncClient, seconds: float) -> None:
    """Paced runs of two tenants, three at a time, for `seconds`: the charts' tokens per second and
    first-token latency (the scripted model's `first_token_seconds`)."""
    chance = random.Random(74)
    questions = itertools.cycle(["What is 12 * (3 + 4)?", "hello", "Summarise the release", "What is 7 * 6?"])
    deadline = asyncio.get_running_loop().time() + seconds

    async def loop(tenant: str, user: str) -> None:
        headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
        while asyncio.get_running_loop().time() < deadline:
            params = {
                "tokens": chance.randint(60, 200),
                "tokens_per_second": chance.randint(20, 70),
                "first_token_seconds": round(chance.uniform(0.15, 0.7), 2),
            }
            session_id, _ = await _start(client, tenant, {"input": next(questions), "user": user, "params": params})
            while True:
                runs = (await client.get(f"/v1/sessions/{session_id}", headers=headers)).json()["runs"]
                if runs[-1]["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.25)

    await asyncio.gather(loop("acme", "ann"), loop("acme", "bo"), loop("initech", "cy"))


async def make(folder: Path, work: Path, traffic_seconds: float) -> None:
    stack = Stack(work)
    stack.env |= {
        "TOKENTAIL_AGENTS": json.dumps(AGENTS),
        "TOKENTAIL_LEASE_MS": "2000",
        "TOKENTAIL_API_KEYS": ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
        "TOKENTAIL_SECRET": "s" * 40,
        "TOKENTAIL_ADMIN_KEYS": f"ops:{ADMIN}",
        "TOKENTAIL_TENANT_MAX_ACTIVE_RUNS": "globex:1",
    }
    try:
        url = await asyncio.to_thread(stack.gateway)
        doomed = stack.worker()
        stack.worker()
        await asyncio.to_thread(stack.wait_for_workers, 2)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
            await _traffic(client, traffic_seconds)
            sums = [
                await _start(client, "acme", {"input": question, "user": user, "params": PACED})
                for question, user in (("What is 12 * (3 + 4)?", "ann"), ("hello", "bo"), ("What is 7 * 6?", "ann"))
            ]
            await _start(client, "initech", {"input": "Summarise the incident report", "user": "cy", "params": PACED})
            cleanup = await _start(
                client, "acme", {"input": "Clean up the build cache", "agent": "cleanup", "user": "ann"}
            )
            for _ in range(3):  # one runs, two wait in globex's line: parked at its cap
                await _start(client, "globex", {"input": "Draft the release notes", "agent": "held", "user": "dee"})
            await _start(client, "acme", {"input": "Tidy the logs", "agent": "approve", "user": "bo"})
            cancelled = await _start(client, "initech", {"input": "Translate the FAQ", "agent": "held", "user": "cy"})

            for session_id, _ in sums:
                await _completed(client, "acme", session_id)
            await eventually(lambda: stack.gates.reached(cancelled[1]) == [1], within=60)
            await client.post(f"/v1/admin/sessions/{cancelled[0]}/runs/{cancelled[1]}/cancel", headers=admin)

            # The clean-up run asks before it deletes; ops answers from the admin API; it waits at its gate
            # (the run's worker is killed there), and goes on in a worker that takes it over.
            async def asked() -> dict[str, Any]:
                questions = (await client.get(f"/v1/admin/sessions/{cleanup[0]}", headers=admin)).json()["questions"]
                (mine,) = [q for q in questions if q["run_id"] == cleanup[1]] or [None]
                assert mine is not None, "not asked yet"
                return dict(mine)

            question = await eventually(asked, within=60)
            answer = {"input_id": question["input_id"], "answer": {"approved": True}}
            await client.post(f"/v1/admin/sessions/{cleanup[0]}/runs/{cleanup[1]}/answers", json=answer, headers=admin)
            await eventually(lambda: stack.gates.reached(cleanup[1]), within=60)
            holder = await _holder(client, admin, cleanup[1])
            victim = doomed if holder == doomed.pid else next(p for p in stack.processes if p.pid == holder)
            stack.worker()  # the replacement, so two stay alive
            await asyncio.to_thread(stack.wait_for_workers, 3)
            victim.send_signal(signal.SIGKILL)
            await eventually(lambda: 2 in stack.gates.reached(cleanup[1]), within=60)
            stack.gates.release(cleanup[1])
            await _completed(client, "acme", cleanup[0])

            async with async_playwright() as playwright:
                chromium = shutil.which("chromium") or shutil.which("chromium-browser")
                browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
                context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
                page = await context.new_page()
                await page.goto(f"{url}/console")
                await page.fill("#key", ADMIN)
                await page.click("#key-save")
                await _settled(page, "overview")
                # The killed worker, silent for 10 s now, marked dead (it stays listed for 10 minutes).
                await page.wait_for_selector("#workers tr[data-alive=false]", timeout=60_000)
                await page.wait_for_timeout(300)  # the charts' first frame
                await page.screenshot(path=folder / "console-overview.png")
                await page.goto(f"{url}/console/sessions/{cleanup[0]}/runs/{cleanup[1]}")
                await _settled(page, "timeline")
                await page.screenshot(path=folder / "console-timeline.png", full_page=True)
                await browser.close()
    finally:
        stack.close()


async def _holder(client: httpx2.AsyncClient, admin: dict[str, str], run_id: str) -> int:
    """The pid of the worker that holds `run_id` now."""

    async def found() -> int:
        for worker in (await client.get("/v1/admin/workers", headers=admin)).json()["workers"]:
            if any(run["run_id"] == run_id for run in worker["runs"]):
                return int(worker["pid"])
        raise AssertionError("no worker shows it yet")

    return await eventually(found, within=30, what=f"the worker holding {run_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="docs/images", type=Path)
    parser.add_argument("--traffic", type=float, default=120, help="seconds of traffic before the shots")
    arguments = parser.parse_args()
    arguments.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        asyncio.run(make(arguments.folder, Path(work), arguments.traffic))


if __name__ == "__main__":
    main()
