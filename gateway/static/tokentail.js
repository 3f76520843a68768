// tokentail browser client: a dependency-free ES module served by the gateway at /static/tokentail.js.
//
//   import { Tokentail } from "/static/tokentail.js";
//   const client = new Tokentail();                       // same origin; or new Tokentail({ baseUrl, apiKey })
//   const { session_id } = await client.createSession("hello");
//   client.follow(session_id, { onChange: (session) => render(session.turns), onState: (s) => badge(s) });
//
// `follow` rebuilds the session's transcript from its events (so a page reload shows the same text,
// neither lost nor doubled), keeps following live, reconnects with the last event id after errors
// (backing off; its first connection too, when the gateway cannot be reached), drops what a run's dead attempt streamed on `run.retrying` (and, on `run.continued`,
// the events after its `from_event_id`), and stops once the server has nothing left (204). The last event id of each session is kept in sessionStorage.
// A reload of a long session catches up compacted (`?catch_up=snapshot`): each block of text so far
// comes as one delta, in a `snapshot` event the follower applies as the events it holds
// (`follow(id, { catchUp: "events" })` asks for every delta instead).
// A run that asks (`input.required`) has `turn.status` "waiting" and `turn.questions`, those still
// open (several when asked at once, answered in any order), after a reload too;
// `client.answer(sessionId, runId, inputId, answer)` answers one.
// `client.steer(sessionId, input, runId)` sends input to the run while it works (docs/steering.md):
// `turn.steers` holds each steer, `{ steerId, input, status: "accepted" | "applied" | "failed", at, reason }`,
// where `at` (once applied) is the length of `turn.text` where the answer took it in: the text before
// ends there, the answer to it comes after (after a blank line).
//
// A sub-agent run (`run.spawned`) is no turn of its own: it is a child turn (the same fields, with `name`,
// `agent`, `parentRunId`, `callId`) in `tool.child` of its parent's tool call (`cause.call_id`), which the
// parent's `tool.started` opened just before; its events land in it, its grandchildren in its own tools.
// A child still going when an ancestor ends is ended with it (a cancel's cascade may say so later).
//
// A turn keeps the answer (`text`) apart from the model's thinking (`reasoning`). Agents' own
// `data.<name>` events are followed when named: `follow(id, { data: ["chart"] })` (an EventSource
// hears only the event names it listens for); they land in `turn.data` and reach `onEvent`. Events
// may carry `agent` (a sub-agent or branch): `onEvent` gets each event whole, to group them by it.
//
// Auth: a page that holds an API key passes `apiKey` (sent as a bearer header on REST calls). The
// stream itself uses the session's stream token (an EventSource cannot send headers, so it goes in
// `?token=`): the one `createSession` returned, kept in sessionStorage, or `follow(id, { token })`
// for a token your own backend handed out. It is refreshed shortly before it expires.

const REFRESH_BEFORE_S = 60; // refresh a stream token this long before it expires
const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled"]);
// What an agent streams (with data.<name>): what a run.continued may drop.
const AGENT_EVENTS = new Set(["message.delta", "reasoning.delta", "status", "tool.started", "tool.completed", "tool.failed"]);
const EVENTS = [
  "run.queued", "run.started", "message.delta", "reasoning.delta", "status", "tool.started", "tool.completed",
  "tool.failed", "run.retrying", "run.continued", "run.completed", "run.failed", "run.cancelled", "input.required",
  "input.received", "steer.accepted", "steer.applied", "steer.failed", "run.spawned", "gap", "snapshot",
];

export class TokentailError extends Error {
  constructor(status, type, message) {
    super(`${status} ${type}: ${message}`);
    this.status = status;
    this.type = type;
  }
}

// A stream token's expiry (unix seconds), read from its payload; 0 if it cannot be read.
function tokenExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).exp ?? 0;
  } catch {
    return 0;
  }
}

export class Tokentail {
  constructor({ baseUrl = "", apiKey = null, storage = globalThis.sessionStorage } = {}) {
    this.baseUrl = baseUrl;
    this.apiKey = apiKey;
    this.storage = storage;
  }

  async #call(method, path, body, credential = this.apiKey) {
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    if (credential) headers.Authorization = `Bearer ${credential}`;
    const response = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const payload = response.status === 204 ? null : await response.json();
    if (!response.ok) {
      const error = payload?.error ?? { type: "http_error", message: response.statusText };
      throw new TokentailError(response.status, error.type, error.message);
    }
    return payload;
  }

  async createSession(input, options = {}) {
    const created = await this.#call("POST", "/v1/sessions", { input, ...options });
    if (created.stream_token) this.storage?.setItem(`tokentail:token:${created.session_id}`, created.stream_token);
    return created;
  }

  send(sessionId, input, options = {}) {
    return this.#call("POST", `/v1/sessions/${sessionId}/runs`, { input, ...options });
  }

  // Cancel run `runId` (the one this page shows going): a run that ended meanwhile, and the one after
  // it, are left alone (`status: "not_active"`). Without it, whatever run is active then.
  cancel(sessionId, runId = null) {
    return this.#call("POST", `/v1/sessions/${sessionId}/cancel`, runId ? { run_id: runId } : undefined);
  }

  // Input for run `runId` while it works (without it, whatever run is active): 202 `{steer_id, run_id,
  // status}`. A 409 `run_not_active` says no run (or not that one) is active any more: nothing was
  // stored, send it as a new message instead. 429 `too_many_pending_steers`: 8 wait already.
  steer(sessionId, input, runId = null) {
    return this.#call("POST", `/v1/sessions/${sessionId}/steer`, runId ? { input, run_id: runId } : { input });
  }

  // The answer to one of a run's questions (`turn.questions`, from its input.required events): the run
  // goes on once each has its answer.
  answer(sessionId, runId, inputId, answer, token = null) {
    const path = `/v1/sessions/${sessionId}/runs/${runId}/input`;
    return this.#call("POST", path, { input_id: inputId, answer }, this.apiKey ?? token ?? this.streamToken(sessionId));
  }

  getSession(sessionId, token = null) {
    return this.#call("GET", `/v1/sessions/${sessionId}`, undefined, this.apiKey ?? token);
  }

  // A fresh stream token, asked with the API key or with the current token while it is still valid.
  async refreshToken(sessionId, token = null) {
    const path = `/v1/sessions/${sessionId}/token`;
    const { stream_token } = await this.#call("POST", path, undefined, this.apiKey ?? token);
    if (stream_token) this.storage?.setItem(`tokentail:token:${sessionId}`, stream_token);
    return stream_token;
  }

  streamToken(sessionId) {
    return this.storage?.getItem(`tokentail:token:${sessionId}`) ?? null;
  }

  lastEventId(sessionId) {
    return Number(this.storage?.getItem(`tokentail:last:${sessionId}`) ?? 0);
  }

  follow(sessionId, handlers = {}) {
    return new SessionFollower(this, sessionId, handlers);
  }
}

// One session followed live.
// `turns`: [{ runId, input, text, reasoning, status, attempt, tools: [...], notes: [...], data: [...], steers: [...] }]:
// the session's own runs; a sub-agent run is the `child` of its parent's tool call.
export class SessionFollower {
  constructor(
    client,
    sessionId,
    { onChange = () => {}, onState = () => {}, onEvent = () => {}, token = null, data = [], catchUp = "snapshot" } = {},
  ) {
    this.client = client;
    this.sessionId = sessionId;
    this.handlers = { onChange, onState, onEvent };
    this.events = [...EVENTS, ...data.map((name) => `data.${name}`)];
    this.catchUp = catchUp;
    this.token = token ?? client.streamToken(sessionId);
    this.turns = [];
    this.children = new Map(); // run id -> the child turn of a sub-agent run
    this.lastId = 0; // replay from the start: the transcript is rebuilt, not patched
    this.seenBefore = client.lastEventId(sessionId); // events up to here were shown before a reload
    this.active = new Set();
    this.failures = 0;
    this.closed = false;
    this.source = null;
    this.#open();
  }

  get state() {
    return this._state;
  }

  // Open again after new work was queued on an idle session.
  resume() {
    if (this.closed || this.source === null) {
      this.closed = false;
      this.#open();
    }
  }

  close() {
    this.closed = true;
    this.source?.close();
    this.source = null;
    this.#setState("closed");
  }

  #setState(state) {
    if (this._state !== state) {
      this._state = state;
      this.handlers.onState(state);
    }
  }

  async #open() {
    if (this.token && tokenExpiry(this.token) - Date.now() / 1000 < REFRESH_BEFORE_S) {
      try {
        this.token = await this.client.refreshToken(this.sessionId, this.token);
      } catch (error) {
        if (!this.#stopFor(error)) this.#scheduleRetry();
        return;
      }
    }
    if (this.closed) return;
    const params = new URLSearchParams({ last_event_id: String(this.lastId), catch_up: this.catchUp });
    if (this.token) params.set("token", this.token);
    const source = new EventSource(`${this.client.baseUrl}/v1/sessions/${this.sessionId}/events?${params}`);
    this.source = source;
    this.#setState(this.failures ? "reconnecting" : "connecting");
    let opened = false;
    source.onopen = () => {
      opened = true;
      this.failures = 0;
      this.#setState("live");
    };
    for (const name of this.events) {
      source.addEventListener(name, (message) => this.#receive(name, message));
    }
    source.onerror = () => {
      // Reconnect ourselves rather than let the browser do it: its retry would reuse this URL, whose
      // ?last_event_id (which wins over the Last-Event-ID header) is where this connection started.
      source.close();
      this.source = null;
      if (this.closed) return;
      if (this.active.size === 0) {
        if (opened) this.#setState("idle"); // the stream ended: nothing left, nothing coming
        else this.#unopened();
        return;
      }
      this.#scheduleRetry();
    };
  }

  // A connection that never opened, with no run known to be going: the gateway answered 204 (nothing
  // left) or could not be reached (not up yet, restarting). The session says which: no active run and
  // nothing after the last id is the 204's condition; else it is tried again, as a reconnect is.
  async #unopened() {
    try {
      const session = await this.client.getSession(this.sessionId, this.token);
      if (session.active_run_id === null && session.last_event_id <= this.lastId) {
        if (!this.closed) this.#setState("idle");
        return;
      }
    } catch (error) {
      if (this.#stopFor(error, false)) return;
    }
    if (!this.closed) this.#scheduleRetry();
  }

  #scheduleRetry() {
    this.failures += 1;
    this.#setState("reconnecting");
    const delay = Math.min(10000, 500 * 2 ** (this.failures - 1)) * (0.5 + Math.random() / 2);
    setTimeout(() => this.#retry(), delay);
  }

  // EventSource does not say why it gave up: ask, and stop for good if the session is gone or the
  // credentials are refused (an expired token is refreshed first, on the way back in #open).
  async #retry() {
    if (this.closed) return;
    try {
      await this.client.getSession(this.sessionId, this.token);
    } catch (error) {
      if (this.#stopFor(error, false)) return;
    }
    if (!this.closed) this.#open();
  }

  // True (and stopped) for errors that no retry can mend. An expired token is mended by a refresh
  // (with the API key) unless the refresh itself is what failed.
  #stopFor(error, expiredIsFatal = true) {
    if (!(error instanceof TokentailError)) return false;
    const gone = error.status === 404 || error.status === 410;
    const refused = error.status === 401 || error.status === 403;
    if (!gone && !refused) return false;
    if (error.type === "token_expired" && !expiredIsFatal) return false;
    this.closed = true;
    this.#setState(gone ? "gone" : "unauthorized");
    return true;
  }

  #receive(name, message) {
    const data = JSON.parse(message.data);
    const id = message.lastEventId && name !== "gap" ? Number(message.lastEventId) : null;
    if (id !== null && id <= this.lastId) return; // never apply an event twice
    if (name === "snapshot") {
      // A compacted catch-up: the events up to its id, each block of text as one delta.
      for (const event of data.events) this.#take(event.event, event.data, event.id);
    } else {
      this.#take(name, data, id);
    }
    if (id !== null) {
      this.lastId = id;
      this.client.storage?.setItem(`tokentail:last:${this.sessionId}`, String(id));
    }
    this.handlers.onChange(this);
  }

  #take(name, data, id) {
    if (id !== null) this.lastId = id;
    if (!this.#wanted(name)) return;
    this.#apply(name, data);
    this.handlers.onEvent({ id: this.lastId, event: name, data, replayed: this.lastId <= this.seenBefore });
  }

  // A snapshot holds every event; the follower applies what it listens for.
  #wanted(name) {
    return this.events.includes(name);
  }

  #turn(runId) {
    const child = this.children.get(runId);
    if (child) return child;
    let turn = this.turns.find((t) => t.runId === runId);
    if (!turn) {
      turn = { runId, input: "", text: "", reasoning: "", status: "queued", attempt: 0, tools: [], notes: [], data: [], steers: [], questions: [] };
      this.turns.push(turn);
    }
    return turn;
  }

  #apply(name, data) {
    if (name === "gap") {
      this.turns.push({
        runId: null, input: "", text: "", reasoning: "", status: "gap", tools: [], data: [], steers: [], questions: [],
        notes: [`earlier events are gone (${data.reason})`],
      });
      return;
    }
    if (name === "run.spawned") {
      this.#spawned(data);
      return;
    }
    const turn = this.#turn(data.run_id);
    if (name === "run.started" || name.startsWith("input.")) {
      turn.since = []; // a run.continued never drops what came before a start or a question
    } else if (AGENT_EVENTS.has(name) || name.startsWith("data.")) {
      // Where the turn stood before this event: what a run.continued dropping it goes back to.
      const at = { id: this.lastId, text: turn.text.length, reasoning: turn.reasoning.length };
      (turn.since ??= []).push({ ...at, notes: turn.notes.length, data: turn.data.length, tools: turn.tools.length });
    }
    switch (name) {
      case "run.queued":
        turn.input = data.input;
        this.active.add(data.run_id);
        break;
      case "run.started":
        turn.status = "running";
        turn.attempt = data.attempt;
        turn.questions = [];
        this.active.add(data.run_id);
        break;
      case "input.required":
        turn.status = "waiting";
        turn.questions = [...turn.questions, data]; // {input_id, kind, prompt, schema, expires_at?, call_id?}: answer()
        break;
      case "input.received":
        turn.questions = turn.questions.filter((question) => question.input_id !== data.input_id);
        turn.status = data.waiting_for?.length ? "waiting" : "queued"; // the last answer lets the run go on
        turn.answers = [...(turn.answers ?? []), { inputId: data.input_id, answer: data.answer }];
        break;
      case "message.delta":
        turn.text += data.text;
        break;
      case "reasoning.delta":
        turn.reasoning += data.text;
        break;
      case "status":
        turn.notes.push(data.text);
        break;
      case "tool.started":
        turn.tools.push({ callId: data.call_id, name: data.name, arguments: data.arguments, state: "running" });
        break;
      case "tool.completed":
      case "tool.failed": {
        const call = turn.tools.find((t) => t.callId === data.call_id);
        if (call) Object.assign(call, { state: name === "tool.completed" ? "done" : "failed", result: data.result, error: data.error });
        break;
      }
      case "steer.accepted":
      case "steer.applied":
      case "steer.failed": {
        let steer = turn.steers.find((s) => s.steerId === data.steer_id);
        if (!steer) {
          steer = { steerId: data.steer_id, input: "", status: "accepted", at: null, reason: null };
          turn.steers.push(steer);
        }
        if (name === "steer.accepted") steer.input = data.input;
        if (name === "steer.applied") Object.assign(steer, { status: "applied", at: turn.text.length });
        if (name === "steer.failed") Object.assign(steer, { status: "failed", reason: data.reason });
        break;
      }
      case "run.continued": {
        // The run goes on from its record: drop only the events after from_event_id (the text of
        // a model turn a crash cut, when its provider could not continue it; what a graph did after
        // its last checkpoint).
        const cut = (turn.since ?? []).find((mark) => mark.id > data.from_event_id);
        if (cut) {
          turn.text = turn.text.slice(0, cut.text);
          turn.reasoning = turn.reasoning.slice(0, cut.reasoning);
          turn.notes = turn.notes.slice(0, cut.notes);
          turn.data = turn.data.slice(0, cut.data);
          turn.tools = turn.tools.filter((call, i) => i < cut.tools || call.child); // a child run is never undone
          turn.since = turn.since.filter((mark) => mark.id < cut.id);
          for (const steer of turn.steers) if (steer.at > turn.text.length) steer.at = turn.text.length;
        }
        turn.status = "running";
        turn.attempt = data.attempt;
        break;
      }
      case "run.retrying": {
        // The run starts over: drop everything it showed, what came before an answered question
        // included (the next attempt streams it again). docs/api.md, "What a client keeps".
        turn.text = "";
        turn.reasoning = "";
        turn.tools = turn.tools.filter((call) => call.child); // its children go on: a new attempt takes them up again
        turn.data = [];
        turn.answers = [];
        turn.since = [];
        for (const steer of turn.steers) {
          if (steer.status === "applied") Object.assign(steer, { status: "accepted", at: null }); // taken in again
        }
        turn.notes.push(`retrying (attempt ${data.attempt})`);
        break;
      }
      default:
        if (name.startsWith("data.")) {
          turn.data.push({ name: name.slice(5), data: data.data, agent: data.agent ?? null });
        } else if (TERMINAL.has(name)) {
          turn.status = name.slice(4); // completed | failed | cancelled
          if (name === "run.completed") turn.text = data.output;
          if (name === "run.failed") turn.notes.push(data.error.message);
          this.active.delete(data.run_id);
          this.#endChildren(data.run_id, turn.status);
        }
    }
  }

  // A child run, in its parent's tool call (the one its parent opened for it, else one made for it).
  #spawned(data) {
    const parent = this.#turn(data.parent_run_id);
    const child = {
      runId: data.run_id, parentRunId: data.parent_run_id, callId: data.cause?.call_id ?? null, name: data.name,
      agent: data.agent, input: data.input, text: "", reasoning: "", status: "running", attempt: 0,
      tools: [], notes: [], data: [], steers: [], questions: [],
    };
    this.children.set(data.run_id, child);
    this.active.add(data.run_id);
    let call = parent.tools.find((t) => t.callId === child.callId && !t.child);
    if (!call) {
      call = { callId: child.callId, name: data.name, arguments: { input: data.input }, state: "running" };
      parent.tools.push(call);
    }
    call.child = child;
  }

  // The children still going when their parent ended: ended with it, theirs too.
  #endChildren(runId, status) {
    for (const child of this.children.values()) {
      if (child.parentRunId !== runId || !["queued", "running", "waiting"].includes(child.status)) continue;
      child.status = status === "completed" ? "cancelled" : status;
      child.questions = [];
      this.active.delete(child.runId);
      this.#endChildren(child.runId, child.status);
    }
  }
}
