"""The demo page shows a run's sub-agent runs as nested parts that open and close, each under the tool
call that spawned it, live and after a reload. The children are written straight into Redis
(tests/support/children.py), as the contract of issue 72 says a spawn writes them."""

from playwright.async_api import Browser, expect

from tests.fixtures.stack import Gateway
from tests.support.children import Tree
from tests.support.sessions import held, start_a_run
from tests.support.writes import AllWrites
from tokentail.shared.vocabulary.events import RunCancelled, RunContinued


async def test_the_demo_nests_each_child_in_its_parents_tool_call_and_folds_it_once_ended(
    browser: Browser, gateway: Gateway, runs: AllWrites
) -> None:
    session_id, root = await start_a_run(runs)
    tree = Tree(runs, session_id, root.run_id)
    first_words = await tree.say(root.run_id, "Let me ask a helper. ")
    a = await tree.spawn(root.run_id, "researcher", "find the facts")
    await tree.say(a, "Looking it up. ")
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{gateway.url}/?session={session_id}")

    turn = page.locator("article.turn").last
    researcher = turn.locator("details.subagent[data-name=researcher]")
    await expect(researcher).to_have_attribute("data-status", "running")
    await expect(researcher).to_have_attribute("open", "")  # open while it runs
    await expect(researcher.locator(":scope > .assistant")).to_have_text("Looking it up.")
    await expect(turn.locator(".progress .chip", has_text="researcher")).to_have_count(0)  # its part, not a chip
    # The session's run taken over back to before its tool call: its text after that point goes, its
    # child (a run of its own, which the new attempt takes up again) stays.
    await tree.say(root.run_id, "cut ")
    await tree.append(("run.continued", RunContinued(run_id=root.run_id, attempt=2, from_event_id=first_words)))
    await expect(turn.locator(":scope > .assistant")).to_have_text("Let me ask a helper.")
    await expect(researcher).to_have_attribute("data-status", "running")

    # Live: a grandchild opens inside it; the session's own answer stays the parent's text.
    checker_id = await tree.spawn(a, "fact-checker", "check it")
    await tree.say(checker_id, "Checked: true.")
    checker = researcher.locator("details.subagent[data-name=fact-checker]")
    await expect(checker.locator(":scope > .assistant")).to_have_text("Checked: true.")
    await tree.end(checker_id, "Checked: true.")
    await expect(checker).to_have_attribute("data-status", "completed")
    await expect(checker).not_to_have_attribute("open", "")  # folded once ended
    await checker.locator(":scope > summary").click()  # the reader opens it: it stays open
    await tree.say(a, "Found it.")
    await expect(researcher.locator(":scope > .assistant")).to_have_text("Looking it up. Found it.")
    await expect(checker).to_have_attribute("open", "")
    await tree.end(a, "Looking it up. Found it.")
    await expect(researcher).to_have_attribute("data-status", "completed")
    await tree.say(root.run_id, "It says: found it.")
    await tree.end_root("Let me ask a helper. It says: found it.")
    await expect(turn).to_have_attribute("data-status", "completed")
    await expect(turn.locator(":scope > .assistant")).to_have_text("Let me ask a helper. It says: found it.")
    await expect(page.locator("article.turn")).to_have_count(1)  # a child is no turn of its own

    await page.reload()  # rebuilt from the stream: the same tree, folded
    researcher = page.locator("article.turn details.subagent[data-name=researcher]")
    await expect(researcher).to_have_attribute("data-status", "completed")
    await expect(researcher).not_to_have_attribute("open", "")
    await researcher.locator(":scope > summary").click()
    await expect(researcher.locator(":scope > .assistant")).to_have_text("Looking it up. Found it.")
    await expect(researcher.locator("details.subagent[data-name=fact-checker]")).to_have_attribute(
        "data-status", "completed"
    )
    assert errors == []


async def test_a_child_still_running_when_its_session_run_is_cancelled_ends_with_it(
    browser: Browser, gateway: Gateway, runs: AllWrites
) -> None:
    session_id, root = await start_a_run(runs)
    tree = Tree(runs, session_id, root.run_id)
    a = await tree.spawn(root.run_id, "researcher")
    await tree.say(a, "Looking. ")
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/?session={session_id}")
    researcher = page.locator("details.subagent[data-name=researcher]")
    await expect(researcher).to_have_attribute("data-status", "running")
    ending = RunCancelled(run_id=root.run_id, reason="cancelled by request")
    await (await held(runs, session_id, root.run_id)).append([], ending=ending)  # its child's own end is not written
    await expect(page.locator("article.turn").last).to_have_attribute("data-status", "cancelled")
    await expect(researcher).to_have_attribute("data-status", "cancelled")
    await expect(page.locator("#state")).to_have_attribute("data-state", "idle")
