"""The demo page shows a run's question and answers it, after a reload too."""

from typing import Any

import httpx2
from playwright.async_api import Browser, Page, expect

AGENTS = {
    "approve": "tests.agents.asking_agent:approval",
    "parallel": "tests.agents.asking_agent:parallel_approvals",
    "two": "tests.agents.asking_agent:two_questions",
}


async def _demo_of_a_run(browser: Browser, start_gateway: Any, start_worker: Any, agent: str) -> tuple[Page, list[str]]:
    """The demo page following a new run of `agent`, and the page's errors as they come."""
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": agent})).json()
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{gateway.url}/?session={made['session_id']}")
    return page, errors


async def test_the_demo_answers_an_approval_after_a_reload(
    browser: Browser, start_gateway: Any, start_worker: Any
) -> None:
    page, errors = await _demo_of_a_run(browser, start_gateway, start_worker, "approve")
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


async def test_the_demo_shows_two_questions_asked_at_once_and_answers_them_in_either_order(
    browser: Browser, start_gateway: Any, start_worker: Any
) -> None:
    page, errors = await _demo_of_a_run(browser, start_gateway, start_worker, "parallel")
    questions = page.locator("form.question")
    await expect(questions).to_have_count(2)
    await questions.filter(has_text="Delete cache?").get_by_role("button", name="Deny").click()
    await expect(questions).to_have_count(1)  # the other one is still asked
    turn = page.locator("article.turn").last
    await expect(turn).to_have_attribute("data-status", "waiting")
    await page.reload()  # a reloaded page asks only the question still open
    await expect(questions).to_have_count(1)
    await questions.filter(has_text="Delete logs?").get_by_role("button", name="Approve").click()
    await expect(turn).to_have_attribute("data-status", "completed")
    await expect(turn.locator(".assistant")).to_have_text("Checking. logs deleted, cache kept.")
    await expect(questions).to_have_count(0)
    assert errors == []


async def test_a_question_asked_before_any_text_has_no_empty_bubble_and_the_box_says_to_answer_it(
    browser: Browser, start_gateway: Any, start_worker: Any
) -> None:
    # It drew an empty answer bubble above the question, and its box said "Add to the answer while it
    # streams" (and steered) while the run waited for the answer.
    page, errors = await _demo_of_a_run(browser, start_gateway, start_worker, "two")
    question = page.locator("form.question")
    await expect(question).to_contain_text("Which colour?")
    turn = page.locator("article.turn").last
    await expect(turn).to_have_attribute("data-status", "waiting")
    await expect(turn.locator(".assistant")).to_be_hidden()
    box = page.get_by_label("Message")
    await expect(box).to_have_attribute("placeholder", "Answer the question above first")
    await question.get_by_role("button", name="blue").click()
    await expect(question).to_contain_text("How many?")  # asked after the text "blue it is. "
    await expect(turn.locator(".assistant")).to_have_text("blue it is.")
    await question.locator("[name=answer]").fill("3")
    await question.get_by_role("button", name="Answer").click()
    await expect(turn).to_have_attribute("data-status", "completed")
    await expect(box).to_have_attribute("placeholder", "Ask something")
    assert errors == []
