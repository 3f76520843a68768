"""The browser client (/static/tokentail.js) with every kind of event an agent can stream."""

from collections.abc import Callable
from typing import Any

from playwright.async_api import Browser

AGENTS = {"every_event": "tests.agents.every_event_agent:every_event"}

FOLLOW = """async ({ data }) => {
  const { Tokentail } = await import("/static/tokentail.js");
  const client = new Tokentail();
  const { session_id } = await client.createSession("anything", { agent: "every_event" });
  const events = [];
  return await new Promise((resolve) => {
    client.follow(session_id, {
      data,
      onEvent: (event) => events.push(event),
      onChange: (session) => {
        const turn = session.turns[0];
        if (turn?.status === "completed") resolve({ turn, events });
      },
    });
  });
}"""


async def _follow(
    browser: Browser, start_gateway: Callable[..., Any], start_worker: Callable[..., Any], data: list[str]
) -> Any:
    """A run of the every_event agent, followed in the page until it completes: its turn and events."""
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    page = await browser.new_page()
    await page.goto(gateway.url)
    return await page.evaluate(FOLLOW, {"data": data})


async def test_reasoning_data_and_agent_labels_reach_the_page(
    browser: Browser, start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    result = await _follow(browser, start_gateway, start_worker, ["chart"])
    turn = result["turn"]
    assert turn["text"] == "Found three." and turn["reasoning"] == "Thinking it over. Look it up first."
    assert turn["data"] == [{"name": "chart", "data": {"points": [1, 2, 3]}, "agent": "researcher"}]
    assert [(tool["name"], tool["state"], tool["result"]) for tool in turn["tools"]] == [
        ("lookup", "done", {"found": 3})
    ]
    labels = {event["event"]: event["data"].get("agent") for event in result["events"]}
    assert labels["status"] == labels["tool.started"] == labels["data.chart"] == "researcher"
    assert labels["message.delta"] == "writer" and labels["reasoning.delta"] is None


async def test_data_events_not_asked_for_are_not_heard(
    browser: Browser, start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    result = await _follow(browser, start_gateway, start_worker, [])
    assert result["turn"]["data"] == [] and result["turn"]["text"] == "Found three."
    assert not any(event["event"].startswith("data.") for event in result["events"])


REOPEN = """async ({ sessionId, catchUp }) => {
  const { Tokentail } = await import("/static/tokentail.js");
  const client = new Tokentail();
  const events = [];
  return await new Promise((resolve) => {
    const follower = client.follow(sessionId, {
      data: ["chart"],
      catchUp,
      onEvent: (event) => events.push(event.event),
      onState: (state) => {
        if (state === "idle") resolve({ turns: follower.turns, events });
      },
    });
  });
}"""


async def test_a_page_reopening_a_finished_chat_catches_up_from_snapshots_with_the_same_turns(
    browser: Browser, start_gateway: Callable[..., Any], start_worker: Callable[..., Any], client: Any
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    created = (await client.post(f"{gateway.url}/v1/sessions", json={"input": "hi", "params": {"tokens": 40}})).json()
    for _ in range(2):
        run = {"input": "more", "params": {"tokens": 40}, "multitask": "enqueue"}
        queued = await client.post(f"{gateway.url}/v1/sessions/{created['session_id']}/runs", json=run)
        assert queued.status_code == 202, queued.text
    page = await browser.new_page()
    await page.goto(gateway.url)
    every = await page.evaluate(REOPEN, {"sessionId": created["session_id"], "catchUp": "events"})
    compacted = await page.evaluate(REOPEN, {"sessionId": created["session_id"], "catchUp": "snapshot"})
    assert [turn["status"] for turn in every["turns"]] == ["completed"] * 3
    # The same turns (`since`, where each event left a turn, is the follower's own bookkeeping).
    shown = [[{k: v for k, v in turn.items() if k != "since"} for turn in r["turns"]] for r in (compacted, every)]
    assert shown[0] == shown[1]
    # Each turn's text in as few deltas as the events between them allow (the follow-ups' `run.queued`
    # may land in the first turn's text): never two in a row, and fewer than read one by one.
    deltas = compacted["events"].count("message.delta")
    assert 3 <= deltas < every["events"].count("message.delta")
    assert ["message.delta"] * 2 not in [compacted["events"][i : i + 2] for i in range(len(compacted["events"]))]
    assert set(compacted["events"]) == set(every["events"])
