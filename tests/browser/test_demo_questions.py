"""The demo page shows a run's question and answers it, after a reload too."""

from typing import Any

import httpx2
from playwright.async_api import Browser, expect

AGENTS = {"approve": "tests.asking_agent:approval"}


async def test_the_demo_answers_an_approval_after_a_reload(
    browser: Browser, start_gateway: Any, start_worker: Any
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{gateway.url}/?session={made['session_id']}")
    question = page.locator("form.question")
    await expect(question).to_contain_text("Delete 3 files?")
    await expect(page.locator(".turn .assistant").last).to_have_text("Checking.")
    await page.reload()  # the question is in the stream: a reloaded page asks it again
    await expect(question).to_contain_text("Delete 3 files?")
    await question.get_by_role("button", name="Approve").click()
    turn = page.locator("article.turn").last
    await expect(turn).to_have_attribute("data-status", "completed")
    await expect(turn.locator(".assistant")).to_have_text("Checking. Done: deleted.")
    await expect(question).to_have_count(0)
    assert errors == []
