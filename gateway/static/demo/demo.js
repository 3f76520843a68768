// The demo chat page (gateway/static/demo/index.html, served at /): its script, an ES module.
import { Tokentail, TokentailError } from "/static/tokentail.js";
import { renderMarkdown } from "/static/markdown.js";

// With auth on, this page asks for an API key once and keeps it for the tab (sessionStorage).
const client = new Tokentail({ apiKey: sessionStorage.getItem("tokentail:apiKey") });
const url = new URL(location.href);
let sessionId = url.searchParams.get("session"); // the URL keeps the session: a reload comes back to it
let follower = null;
let session = null; // the follower's view: { turns }
let sending = false;
let stopping = false; // Stop was pressed: disabled until that run ends
let pendingRun = null; // a run the gateway took whose events have not arrived yet
let localSteers = []; // steers this tab sent whose steer.accepted has not arrived yet: { runId, input, steerId, status }

const $ = (id) => document.getElementById(id);
const transcript = $("transcript");
const turnsBox = $("turns");
const input = $("input");
const stateBadge = $("state");

let options = {};
try {
  const params = url.searchParams.get("params"); // e.g. ?params={"tokens":200} shapes the scripted model
  options = params ? { params: JSON.parse(params) } : {};
} catch (error) {
  showError(`Ignoring ?params: it is not JSON (${error.message}).`);
}

// ---- errors ----------------------------------------------------------------------------------------
function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}
function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}
$("error-close").addEventListener("click", clearError);

function describe(error) {
  if (error instanceof TokentailError) {
    const why = {
      401: "the gateway needs a valid API key",
      403: "this key may not do that",
      404: "the session is gone",
      410: "the session has expired",
      413: "the message is too long",
      422: "the gateway did not accept the request",
      429: "too many requests, wait a moment and send again",
    }[error.status] ?? (error.status >= 500 ? "the gateway had a problem" : "the gateway refused it");
    if (error.type === "too_many_pending_steers") {
      return `the answer has too many messages waiting to be taken in, wait for it to take them and send again (${error.message})`;
    }
    return `${why} (${error.message})`;
  }
  if (error instanceof TypeError) return "the gateway cannot be reached (network error)";
  return error?.message ?? String(error);
}

// ---- the transcript ----------------------------------------------------------------------------------
let follow = true; // keep the newest text in view, until the reader scrolls up
const atBottom = () => transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 48;
transcript.addEventListener("scroll", () => {
  follow = atBottom();
  $("jump").hidden = follow;
});
function toBottom() {
  follow = true;
  transcript.scrollTop = transcript.scrollHeight;
  $("jump").hidden = true;
}
$("jump").addEventListener("click", toBottom);

function progressChips(turn) {
  const chips = [
    ...turn.notes.map((text) => [text, "note"]),
    ...turn.tools.filter((t) => !t.child).map((t) => [`Running ${t.name}... ${t.state === "running" ? "" : t.state}`.trim(), t.state]),
    ...(turn.status === "cancelled" || turn.status === "failed" ? [[turn.status, turn.status]] : []),
    ...(turn.status === "waiting" ? [["waiting for an answer", "note"]] : []),
  ];
  return chips.map(([text, kind]) => Object.assign(document.createElement("span"), { className: `chip ${kind}`, textContent: text }));
}

const STEER_STATES = { sending: "sending…", accepted: "waiting to be taken in", applied: "taken in" };
const STEER_FAILURES = { run_ended: "the answer ended before taking it in", not_supported: "this agent takes no steers" };
// A turn's steers: the follower's, then this tab's still on their way (not in the stream yet).
function steersOf(turn) {
  const known = turn.steers ?? [];
  const ids = new Set(known.map((s) => s.steerId));
  const claimed = new Set(localSteers.map((s) => s.steerId));
  const mine = localSteers.filter((s) => s.runId === turn.runId && !ids.has(s.steerId));
  // A steer whose 202 has not come back yet, but whose steer.accepted did: shown once.
  const unclaimed = known.filter((s) => !claimed.has(s.steerId)).map((s) => s.input);
  return [...known, ...mine.filter((s) => s.steerId !== null || !unclaimed.includes(s.input))];
}
function renderSteer(steer) {
  const node = Object.assign(document.createElement("div"), { className: "bubble user steer" });
  node.dataset.status = steer.status;
  if (steer.steerId) node.dataset.steerId = steer.steerId;
  const state = steer.status === "failed"
    ? `not taken in: ${STEER_FAILURES[steer.reason] ?? steer.reason}`
    : STEER_STATES[steer.status];
  node.append(
    Object.assign(document.createElement("span"), { className: "steer-text", textContent: steer.input }),
    Object.assign(document.createElement("small"), { className: "steer-state", textContent: `steer · ${state}` }),
  );
  return node;
}
// The answer in pieces: its text up to each steer it took in, the steer, the text after it. Steers
// not taken in (yet) come after the text.
function answerPieces(turn, steers) {
  const pieces = [];
  let from = 0;
  const applied = steers.filter((s) => s.status === "applied").sort((a, b) => a.at - b.at);
  for (const steer of applied) {
    const at = Math.max(from, Math.min(steer.at, turn.text.length));
    pieces.push(assistantBubble(turn.text.slice(from, at), true), renderSteer(steer));
    from = at;
  }
  pieces.push(assistantBubble(applied.length ? turn.text.slice(from).replace(/^\s+/, "") : turn.text, false));
  pieces.push(...steers.filter((s) => s.status !== "applied").map(renderSteer));
  return pieces;
}
function assistantBubble(text, steered) {
  const answer = document.createElement("div");
  answer.className = steered ? "bubble assistant steered" : "bubble assistant";
  answer.append(renderMarkdown(text)); // DOM nodes and text nodes only: model text is never parsed as HTML
  return answer;
}

const rendered = new Map(); // turn -> { key, node }: only turns that changed are built again
function renderTurn(turn) {
  const steers = steersOf(turn);
  const key = JSON.stringify([turn, steers]);
  const known = rendered.get(turn);
  if (known?.key === key) return known.node;
  const block = document.createElement("article");
  block.className = `turn ${turn.status}`;
  block.dataset.runId = turn.runId ?? "";
  block.dataset.status = turn.status;
  const progress = document.createElement("div");
  progress.className = "progress";
  progress.append(...progressChips(turn));
  if (turn.status === "gap") {
    block.append(progress);
  } else {
    const user = Object.assign(document.createElement("div"), { className: "bubble user", textContent: turn.input });
    block.append(user, progress, ...childParts(turn), ...answerPieces(turn, steers));
    block.append(...turn.questions.map((question) => renderQuestion(turn, question)));
  }
  rendered.set(turn, { key, node: block });
  return block;
}

// A run's sub-agent runs, each in its tool call: a part of its own that opens and closes (<details>),
// open while it runs unless the reader closed it, closed once it ended unless the reader opened it.
const ACTIVE = ["queued", "running", "waiting"];
const toggled = new Map(); // run id -> open, where the reader chose otherwise than the default
function childParts(turn) {
  return turn.tools.filter((t) => t.child).map((t) => renderChild(t.child));
}
function renderChild(child) {
  const part = Object.assign(document.createElement("details"), { className: `subagent ${child.status}` });
  Object.assign(part.dataset, { runId: child.runId, status: child.status, name: child.name });
  const opened = ACTIVE.includes(child.status);
  part.open = toggled.get(child.runId) ?? opened;
  part.addEventListener("toggle", () => {
    if (part.open === opened) toggled.delete(child.runId);
    else toggled.set(child.runId, part.open);
  });
  const summary = document.createElement("summary");
  summary.append(
    Object.assign(document.createElement("span"), { className: "name", textContent: child.name }),
    Object.assign(document.createElement("span"), { className: `chip ${child.status}`, textContent: child.status }),
    Object.assign(document.createElement("span"), { className: "task", textContent: child.input }),
  );
  const progress = document.createElement("div");
  progress.className = "progress";
  progress.append(...progressChips(child));
  part.append(summary, progress, ...childParts(child));
  if (child.text) part.append(assistantBubble(child.text, false));
  part.append(...child.questions.map((question) => renderQuestion(child, question)));
  return part;
}

// A question a run waits on (input.required; several when asked at once), with the controls its kind
// needs. Any tab, after a reload too, shows it; the first answer wins (another tab's is refused: 409).
function renderQuestion(turn, question) {
  const form = Object.assign(document.createElement("form"), { className: "question" });
  form.dataset.inputId = question.input_id;
  form.append(Object.assign(document.createElement("p"), { textContent: question.prompt }));
  const send = async (value) => {
    clearError();
    for (const control of form.elements) control.disabled = true;
    try {
      await client.answer(sessionId, turn.runId, question.input_id, value);
    } catch (error) {
      showError(describe(error));
      for (const control of form.elements) control.disabled = false;
    }
  };
  const button = (label, value, kind = "") => {
    const b = Object.assign(document.createElement("button"), { type: "button", textContent: label, className: kind });
    b.addEventListener("click", () => send(typeof value === "function" ? value() : value));
    return b;
  };
  if (question.kind === "approval") {
    form.append(button("Approve", { approved: true }, "approve"), button("Deny", { approved: false }, "deny"));
  } else if (question.kind === "choice") {
    form.append(...(question.schema.enum ?? []).map((choice) => button(choice, choice)));
  } else {
    const field = document.createElement(question.kind === "json" ? "textarea" : "input");
    field.name = "answer";
    field.placeholder = question.kind === "json" ? "JSON" : "Your answer";
    form.append(field, button("Answer", () => (question.kind === "json" ? JSON.parse(field.value || "null") : field.value)));
  }
  return form;
}

let frame = 0;
function scheduleRender() {
  frame ||= requestAnimationFrame(render);
}
function render() {
  frame = 0;
  forgetStreamedSteers();
  const turns = session?.turns ?? [];
  const stick = follow;
  const nodes = turns.map(renderTurn);
  if (nodes.length !== turnsBox.children.length || nodes.some((node, i) => turnsBox.children[i] !== node)) {
    turnsBox.replaceChildren(...nodes);
  }
  $("intro").hidden = turns.length > 0 || sessionId !== null;
  if (stick) toBottom();
  else $("jump").hidden = false;
  updateButtons();
}

function runActive() {
  const turns = session?.turns ?? [];
  if (pendingRun && turns.some((t) => t.runId === pendingRun)) pendingRun = null;
  return sending || pendingRun !== null || turns.some((t) => ["queued", "running", "waiting"].includes(t.status));
}
// The run this page shows going (what Send steers and Stop cancels), or null.
function activeRun() {
  const going = (session?.turns ?? []).findLast((t) => ["queued", "running", "waiting"].includes(t.status));
  return going?.runId ?? pendingRun;
}
function updateButtons() {
  $("stop").disabled = stopping || !runActive();
  $("send").disabled = sending;
  const steering = sessionId !== null && activeRun() !== null;
  // A run waiting for answers is answered in its questions' forms: what is sent here meanwhile steers
  // it once they let it go on (the steer waits for it), so the box says so rather than "while it streams".
  const asking = (session?.turns ?? []).findLast((t) => t.runId === activeRun())?.questions.length ?? 0;
  input.placeholder = !steering
    ? "Ask something"
    : asking
      ? `Answer the question${asking > 1 ? "s" : ""} above first`
      : "Add to the answer while it streams";
  $("send").title = !steering
    ? ""
    : asking
      ? "Send it to the answer: taken in once your answers let it go on (it steers it)"
      : "Send it to the running answer (steer it)";
}

// ---- connection state and the event inspector ----------------------------------------------------------
const LABELS = { idle: "done", connecting: "connecting", live: "live", reconnecting: "reconnecting", closed: "closed", gone: "gone", unauthorized: "unauthorized" };
const stats = { events: 0, lastId: 0, reconnects: 0, gaps: 0 };
let lost = false; // a connection was lost since the stream was last live
let shownBefore = 0; // the last event id this tab showed before the page (re)loaded
const MAX_ROWS = 400;

function log(kind, cells, extra = {}) {
  const list = $("events");
  const row = document.createElement("li");
  row.className = kind;
  Object.assign(row.dataset, { kind, ...extra });
  for (const [className, text] of cells) {
    row.append(Object.assign(document.createElement("span"), { className, textContent: text }));
  }
  const follows = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
  list.append(row);
  while (list.children.length > MAX_ROWS) list.firstElementChild.remove();
  if (follows) list.scrollTop = list.scrollHeight;
  $("inspector-summary").textContent =
    `· ${stats.events} events · last id ${stats.lastId} · ${stats.reconnects} reconnects · ${stats.gaps} gaps`;
}

function summary(event, data) {
  if (event === "message.delta" || event === "status") return JSON.stringify(data.text);
  if (event === "run.queued") return JSON.stringify(data.input);
  if (event === "run.started" || event === "run.retrying") return `attempt ${data.attempt}${data.reason ? `: ${data.reason}` : ""}`;
  if (event === "tool.started") return `${data.name}(${JSON.stringify(data.arguments)})`;
  if (event === "tool.completed") return `${JSON.stringify(data.result)} in ${data.duration_ms} ms`;
  if (event === "tool.failed") return JSON.stringify(data.error);
  if (event === "run.completed") return `${data.output?.length ?? 0} characters`;
  if (event === "run.failed") return data.error?.message ?? "";
  if (event === "run.cancelled") return data.reason ?? "";
  if (event === "gap") return `${data.reason}, first available id ${data.first_available}`;
  if (event === "input.required") return `${data.kind}: ${JSON.stringify(data.prompt)}`;
  if (event === "input.received") return JSON.stringify(data.answer);
  if (event === "steer.accepted") return JSON.stringify(data.input);
  if (event === "steer.applied") return data.steer_id;
  if (event === "steer.failed") return `${data.steer_id}: ${data.reason}`;
  if (event === "run.spawned") return `${data.name} (${data.run_id}), by ${data.parent_run_id}`;
  return "";
}

let resumedAfterReload = false;
function onEvent({ id, event, data, replayed }) {
  if (event === "gap") {
    stats.gaps += 1;
    log("gap", [["id", "gap"], ["type", event], ["detail", summary(event, data)]]);
    return;
  }
  stats.events += 1;
  stats.lastId = id;
  if ((event === "run.completed" || event === "run.failed" || event === "run.cancelled") && !data.parent_run_id) stopping = false;
  if (!replayed && shownBefore > 0 && !resumedAfterReload) {
    resumedAfterReload = true;
    log("connection resume", [["id", "↻"], ["detail", `resumed from id ${shownBefore}: new events from here on`]], { from: shownBefore });
  }
  log(replayed ? "event replayed" : "event", [["id", `#${id}`], ["type", event], ["detail", summary(event, data)]], { id, type: event });
}

function onState(state) {
  stateBadge.dataset.state = state;
  stateBadge.textContent = LABELS[state] ?? state;
  const from = follower?.lastId ?? 0; // null while the follower is being made: it starts from 0
  if (state === "connecting") {
    log("connection", [["id", "→"], ["detail", `connecting, stream from id ${from}`]], { from });
  } else if (state === "reconnecting") {
    if (!lost) log("connection trouble", [["id", "✕"], ["detail", `connection lost after id ${from}, reconnecting…`]], { from });
    lost = true;
  } else if (state === "live") {
    if (lost) {
      stats.reconnects += 1;
      log("connection resume", [["id", "↻"], ["detail", `reconnected: resumed from id ${from}`]], { from });
    } else {
      log("connection", [["id", "●"], ["detail", `live from id ${from}`]], { from });
    }
    lost = false;
  } else if (state === "idle") {
    log("connection", [["id", "■"], ["detail", `stream ended at id ${from}: nothing left to send`]], { from });
  } else if (state === "gone" || state === "unauthorized") {
    log("connection trouble", [["id", "✕"], ["detail", `stopped: ${state}`]]);
    pendingRun = null;
    showError(state === "gone" ? "This session is gone (deleted or expired). Start a new chat." : "The gateway refused this session's credentials.");
  }
  updateButtons();
}

let generation = 0; // bumped when the page lets go of a follower: its late callbacks are ignored
function followSession() {
  follower?.close();
  follower = null;
  const mine = ++generation;
  shownBefore = client.lastEventId(sessionId);
  resumedAfterReload = false;
  if (shownBefore > 0) {
    log("connection", [["id", "⟳"], ["detail", `page loaded: ids 1–${shownBefore} were shown before, replayed to rebuild the transcript`]], { from: 0 });
  }
  follower = client.follow(sessionId, {
    onChange: (s) => { if (mine === generation) { session = s; scheduleRender(); } },
    onState: (state) => { if (mine === generation) onState(state); },
    onEvent: (event) => { if (mine === generation) onEvent(event); },
  });
}

// ---- sending, stopping, new chat -------------------------------------------------------------------------
async function withApiKey(call) {
  try {
    return await call();
  } catch (error) {
    if (!(error instanceof TokentailError) || error.status !== 401) throw error;
    const key = prompt("This gateway needs an API key:");
    if (!key) throw error;
    sessionStorage.setItem("tokentail:apiKey", key);
    client.apiKey = key;
    return await call();
  }
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || sending) return;
  sending = true;
  input.readOnly = true;
  clearError();
  updateButtons();
  try {
    if (!sessionId) {
      const created = await withApiKey(() => client.createSession(text, options));
      pendingRun = created.run_id;
      sessionId = created.session_id;
      url.searchParams.set("session", sessionId);
      history.replaceState(null, "", url);
      followSession();
    } else if (activeRun() !== null) {
      await steer(text, activeRun());
    } else {
      await sendNext(text);
    }
    input.value = ""; // only once the gateway has the message: a failed send keeps it to send again
    resize();
    toBottom();
  } catch (error) {
    showError(`Not sent: ${describe(error)}. Your message is still in the box.`);
  } finally {
    sending = false;
    input.readOnly = false;
    updateButtons();
    input.focus();
  }
});

async function sendNext(text) {
  pendingRun = (await withApiKey(() => client.send(sessionId, text, { multitask: "enqueue", ...options }))).run_id;
  follower.resume();
}

// While a run streams, a message steers it: shown at once as sending, then as the stream tells
// (steer.accepted, steer.applied where the answer took it in, or steer.failed). A run that ended
// meanwhile (409 run_not_active: nothing was stored) gets it as the next message instead.
async function steer(text, runId) {
  const local = { runId, input: text, steerId: null, status: "sending" };
  localSteers.push(local);
  scheduleRender();
  try {
    const accepted = await withApiKey(() => client.steer(sessionId, text, runId));
    Object.assign(local, { steerId: accepted.steer_id, status: "accepted" });
  } catch (error) {
    localSteers = localSteers.filter((s) => s !== local);
    scheduleRender();
    if (!(error instanceof TokentailError) || error.type !== "run_not_active") throw error;
    await sendNext(text);
  }
  follower.resume();
}
// Once the stream has a steer, the follower's copy is the one shown.
function forgetStreamedSteers() {
  const streamed = new Set((session?.turns ?? []).flatMap((t) => (t.steers ?? []).map((s) => s.steerId)));
  localSteers = localSteers.filter((s) => s.steerId === null || !streamed.has(s.steerId));
}

$("stop").addEventListener("click", async () => {
  if (!sessionId) return;
  stopping = true;
  updateButtons();
  try {
    await withApiKey(() => client.cancel(sessionId, activeRun()));
  } catch (error) {
    stopping = false;
    updateButtons();
    showError(`Could not stop: ${describe(error)}.`);
  }
});

$("new-chat").addEventListener("click", () => {
  generation += 1;
  follower?.close();
  follower = null;
  sessionId = null;
  session = null;
  stopping = false;
  pendingRun = null;
  localSteers = [];
  url.searchParams.delete("session");
  history.replaceState(null, "", url);
  rendered.clear();
  turnsBox.replaceChildren();
  $("events").replaceChildren();
  Object.assign(stats, { events: 0, lastId: 0, reconnects: 0, gaps: 0 });
  lost = false;
  $("inspector-summary").textContent = "";
  stateBadge.dataset.state = "idle";
  stateBadge.textContent = "ready";
  clearError();
  $("intro").hidden = false;
  updateButtons();
  input.focus();
});

function resize() { // grow with the text, up to the max-height in the CSS
  input.style.height = "";
  if (input.value) input.style.height = `${input.scrollHeight + 2}px`;
}
input.addEventListener("input", resize);
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
for (const button of document.querySelectorAll("[data-suggestion]")) {
  button.addEventListener("click", () => {
    input.value = button.dataset.suggestion;
    resize();
    input.focus();
  });
}

// The inspector stays open or closed across reloads (a reload is when it has the most to show).
const inspector = $("inspector");
inspector.open = sessionStorage.getItem("tokentail:inspector") === "open";
inspector.addEventListener("toggle", () => sessionStorage.setItem("tokentail:inspector", inspector.open ? "open" : ""));

if (sessionId) {
  $("intro").hidden = true;
  followSession();
}
updateButtons();
