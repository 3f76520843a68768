// A run's timeline: its stages on one time axis (a lane per kind of stage: instants as markers, what
// lasted as bars), the same stages as a table, the native events with their ids (paged by next_after),
// the trace link, its open questions and the cancel action, and time travel: a fork from any of its events
// and a re-run of a run that failed or was cancelled, each opening the new run, which links back to this
// one (`forked_from`). The live stream (`?session=&run=`) sends the
// timeline's first page again whenever the run's session has new events.

import { actionFailed, api, query } from "./api.js";
import { $, clock, h, nav, runPath, sessionPath, short, span, statusChip } from "./dom.js";
import { questionCard } from "./questions.js";

const ACTIVE = new Set(["queued", "running", "waiting"]);
const RERUN = new Set(["failed", "cancelled"]);
const timelineApi = (sid, rid) => `/v1/admin/sessions/${encodeURIComponent(sid)}/runs/${encodeURIComponent(rid)}/timeline`;

/** The lanes of the axis, top to bottom, and the kinds of stage each shows. */
const LANES = [
  ["line", ["queued"]],
  ["attempts", ["started", "retrying", "continued", "lost"]],
  ["text", ["text"]],
  ["tools", ["tool"]],
  ["questions", ["question", "answered"]],
  ["steers", ["steer"]],
  ["children", ["spawned"]],
  ["usage", ["usage"]],
  ["end", ["ended"]],
];

/** A start as people say it: its attempt, and whether it took the run over or resumed it after a wait. */
function startName(stage) {
  if (stage.reason === "resume") return `resume (attempt ${stage.attempt})`;
  return `attempt ${stage.attempt}${stage.reason === "takeover" ? " (takeover)" : ""}`;
}

/** Usage as figures: `input_tokens 120 · output_tokens 48`, nested objects by their path. */
function figures(value, path = "") {
  if (value === null || typeof value !== "object") {
    return [[path, typeof value === "number" ? value.toLocaleString("en") : String(value)]];
  }
  return Object.entries(value).flatMap(([name, inner]) => figures(inner, path ? `${path}.${name}` : name));
}

/** The axis's lanes, top to bottom: [name, kind, whether it shows a stage]; each child a lane of its own. */
function axisLanes(stages) {
  return LANES.flatMap(([name, kinds]) =>
    name === "children"
      ? stages.filter((s) => s.kind === "spawned").map((child) => [short(child.name || child.agent || "child", 14), "child", (s) => s === child])
      : [[name, name, (s) => kinds.includes(s.kind)]],
  );
}

/** What holds a run still in its tenant's line (the queued stage's `waiting_for`). */
const WAITING_FOR = { turn: "its turn", tenant_cap: "a slot under its tenant's cap", user_cap: "a slot under its user's cap" };

function details(stage, sessionId) {
  switch (stage.kind) {
    case "queued":
      return [
        stage.place !== null && stage.place !== undefined ? `place ${stage.place} in its tenant's line` : "in its tenant's line",
        stage.waiting_for ? ` · waiting for ${WAITING_FOR[stage.waiting_for] ?? stage.waiting_for}` : "",
        stage.wait_ms !== null && stage.wait_ms !== undefined ? ` · waited ${span(stage.wait_ms / 1000)}` : "",
      ];
    case "started":
      return [
        startName(stage),
        stage.worker ? [" · on ", h("code", {}, stage.worker)] : "",
        stage.until ? ` · held it ${span(stage.until - stage.at)}` : "",
      ];
    case "lost":
      return [
        h("span", { class: "bad" }, "worker lost"),
        stage.worker ? [" ", h("code", {}, stage.worker)] : "",
        ` · attempt ${stage.attempt} last heard of here · taken over ${span(stage.taken_over_at - stage.at)} later`,
      ];
    case "retrying":
      return `attempt ${stage.attempt} · ${stage.reason ?? ""}`;
    case "continued":
      return [`attempt ${stage.attempt} continued from event `, h("code", {}, `#${stage.from_event_id}`)];
    case "text":
      return [`${stage.chars} chars from event `, h("code", {}, `#${stage.event_id}`), stage.until ? ` · for ${span(stage.until - stage.at)}` : ""];
    case "tool":
      return [h("b", {}, stage.name), ` · ${stage.status}`, stage.duration_ms !== null && stage.duration_ms !== undefined ? ` · ${span(stage.duration_ms / 1000)}` : "", " · ", h("code", { class: "muted" }, stage.call_id)];
    case "question":
      return [`asked${stage.input_kind ? ` (${stage.input_kind})` : ""} `, h("q", {}, short(stage.prompt, 120)), " · ", h("code", { class: "muted" }, stage.input_id)];
    case "answered":
      return [h("code", {}, stage.input_id), stage.by ? ` by ${stage.by}` : "", stage.gateway ? [" through ", h("code", {}, stage.gateway)] : ""];
    case "steer":
      return [h("q", {}, short(stage.input, 120)), stage.applied ? " · taken in" : " · not taken in"];
    case "spawned":
      return [
        nav(runPath(sessionId, stage.child_run_id), h("code", {}, stage.child_run_id)),
        ` · ${stage.name || stage.agent || ""}`,
        stage.until ? ` · ended after ${span(stage.until - stage.at)}` : " · going",
      ];
    case "usage":
      return h("span", { class: "figures" }, figures(stage.usage).map(([name, value]) => h("span", {}, `${name} `, h("b", {}, value))));
    case "ended":
      return [statusChip(stage.status), stage.reason ? ` ${stage.reason}` : "", stage.error ? [" · ", h("span", { class: "bad" }, stage.error)] : ""];
    default:
      return h("code", {}, short(JSON.stringify(stage), 140));
  }
}

/** Where a stage ends on the axis (seconds), when it lasted: null for an instant. */
function stageEnd(stage, stages, last) {
  switch (stage.kind) {
    case "queued":
      return stage.wait_ms ? stage.at + stage.wait_ms / 1000 : null;
    case "text":
      return stage.until ?? null;
    case "tool":
      if (stage.duration_ms !== null && stage.duration_ms !== undefined) return stage.at + stage.duration_ms / 1000;
      return stage.status === "running" ? last : null;
    case "started": // while its worker held the run (the gateway says: to its last sign of it), or now
    case "spawned": // the child, to its end
      return stage.until ?? last;
    case "question": {
      const answered = stages.find((s) => s.kind === "answered" && s.input_id === stage.input_id);
      return answered ? answered.at : last;
    }
    default:
      return null;
  }
}

/** The few words a bar shows inside it, where it is wide enough (else it clips them). */
function barLabel(stage) {
  switch (stage.kind) {
    case "started":
      return startName(stage);
    case "spawned":
      return stage.name || stage.agent || stage.child_run_id;
    case "tool":
      return stage.name;
    case "queued":
      return "in line";
    case "question":
      return "waiting for an answer";
    default:
      return "";
  }
}

function describe(stage) {
  const { at, kind, ...rest } = stage;
  return `${kind} at ${clock(at)}\n${JSON.stringify(rest)}`;
}

export class TimelineView {
  constructor({ onError, onGone, go }) {
    this.onError = onError;
    this.onGone = onGone;
    this.go = go;
    this.sessionId = null;
    this.runId = null;
    this.timeline = null;
    this.events = new Map();
    this.nextAfter = null;
    this.paged = false;
    this.questionsFor = null;
    $("cancel-run").addEventListener("click", () => this.cancel().catch((error) => this.onError(actionFailed(error))));
    $("events-more").addEventListener("click", () => this.more().catch(this.onError));
    $("rerun-run").addEventListener("click", () => this.fork(null).catch((error) => this.onError(actionFailed(error))));
    $("events").addEventListener("click", (event) => {
      const button = event.target.closest?.("button[data-action=fork]");
      if (button) this.fork(Number(button.dataset.at)).catch((error) => this.onError(actionFailed(error)));
    });
    // While the run is active its axis ends now: it moves on between the stream's snapshots.
    setInterval(() => {
      if (this.timeline && ACTIVE.has(this.timeline.status) && !$("view-timeline").hidden) this.renderAxis(this.timeline);
    }, 1000);
  }

  async show(sessionId, runId) {
    this.sessionId = sessionId;
    this.runId = runId;
    this.events = new Map();
    this.nextAfter = null;
    this.paged = false;
    this.questionsFor = null;
    $("events").replaceChildren();
    this.render(await api(timelineApi(sessionId, runId)));
  }

  /** A `timeline` event of the live stream: the first page, now. */
  live(timeline) {
    if (timeline.run_id !== this.runId || timeline.session_id !== this.sessionId) return;
    this.render(timeline);
  }

  async refresh() {
    try {
      this.render(await api(timelineApi(this.sessionId, this.runId)));
    } catch (error) {
      this.onGone(error);
    }
  }

  render(timeline) {
    this.timeline = timeline;
    const view = $("view-timeline");
    view.dataset.runId = timeline.run_id;
    view.dataset.sessionId = timeline.session_id;
    view.dataset.status = timeline.status;
    $("run-id").textContent = timeline.run_id;
    const chip = $("run-status");
    chip.textContent = timeline.status;
    chip.dataset.status = timeline.status;
    $("run-meta").textContent = `tenant ${timeline.tenant ?? "–"} · attempt ${timeline.attempt}`;
    const session = $("run-session");
    session.href = sessionPath(timeline.session_id);
    session.textContent = timeline.session_id;
    const trace = $("trace-link");
    trace.hidden = !timeline.trace_url;
    if (timeline.trace_url) {
      trace.href = timeline.trace_url;
      trace.textContent = `trace ${short(timeline.trace_id ?? "", 16)}`;
    }
    $("cancel-run").disabled = !ACTIVE.has(timeline.status);
    $("rerun-run").hidden = !RERUN.has(timeline.status);
    const source = timeline.forked_from;
    $("run-forked-from").hidden = !source;
    if (source) {
      $("run-source").href = runPath(source.session_id, timeline.run_id);
      $("run-source").textContent = source.session_id;
      $("run-source-event").textContent = String(source.event_id);
    }
    // The forks made inside it (fork here, re-run), the newest first: each opens the run going on there.
    const forks = timeline.forks ?? [];
    $("run-forks-line").hidden = !forks.length;
    $("run-forks").replaceChildren(
      ...forks.flatMap((fork, index) => [
        ...(index ? [", "] : []),
        nav(runPath(fork.session_id, timeline.run_id), h("code", {}, fork.session_id)),
        ` at event ${fork.event_id}`,
      ]),
    );
    this.renderAxis(timeline);
    this.renderStages(timeline);
    this.mergeEvents(timeline.events, this.paged ? this.nextAfter : timeline.next_after);
    this.renderQuestions(timeline);
  }

  renderAxis(timeline) {
    const stages = timeline.stages;
    const axis = $("axis");
    if (!stages.length) {
      axis.replaceChildren(h("p", { class: "muted" }, "No stage yet."));
      $("axis-span").textContent = "";
      return;
    }
    const start = stages[0].at;
    let last = Math.max(...stages.map((s) => s.at));
    if (ACTIVE.has(timeline.status)) last = Math.max(last, Date.now() / 1000);
    const ends = stages.map((stage) => stageEnd(stage, stages, last));
    const end = Math.max(last, ...ends.filter((e) => e !== null), start + 0.001);
    const width = end - start;
    const x = (at) => `${(((at - start) / width) * 100).toFixed(3)}%`;
    $("axis-span").textContent = `${clock(start)} → ${clock(end)} (${span(width)})${timeline.truncated ? " · the run has more events than a timeline reads: its stages stop early" : ""}`;
    const lanes = [];
    for (const [name, kind, shows] of axisLanes(stages)) {
      const items = [];
      stages.forEach((stage, index) => {
        if (!shows(stage)) return;
        const until = ends[index];
        const attrs = {
          class: until !== null ? "bar" : "mark",
          title: describe(stage),
          style: until !== null ? `left:${x(stage.at)};width:${x(start + Math.max(until - stage.at, 0))}` : `left:${x(stage.at)}`,
          dataset: {
            stageKind: stage.kind,
            index: String(index),
            at: String(stage.at),
            ...(until !== null ? { until: String(until) } : {}),
            ...(stage.attempt !== undefined ? { attempt: String(stage.attempt) } : {}),
            ...(stage.reason ? { reason: stage.reason } : {}),
            ...(stage.status ? { status: stage.status } : {}),
          },
          onclick: () => this.highlight(index),
        };
        const wide = until !== null && (until - stage.at) / width > 0.08; // room for a few words
        items.push(h("div", attrs, wide ? barLabel(stage) : ""));
      });
      if (items.length) lanes.push(h("div", { class: "lane", dataset: { lane: kind } }, h("span", { class: "name", title: name }, name), ...items));
    }
    const ticks = h("div", { class: "ticks" });
    for (let i = 0; i <= 4; i++) ticks.append(h("span", { style: `left:${i * 25}%` }, `+${span((width * i) / 4)}`));
    axis.replaceChildren(...lanes, ticks);
  }

  renderStages(timeline) {
    const stages = timeline.stages;
    const start = stages.length ? stages[0].at : 0;
    const rows = stages.map((stage, index) =>
      h(
        "tr",
        {
          dataset: {
            stageKind: stage.kind,
            index: String(index),
            ...(stage.attempt !== undefined ? { attempt: String(stage.attempt) } : {}),
            ...(stage.reason ? { reason: stage.reason } : {}),
            ...(stage.from_event_id !== undefined ? { fromEventId: String(stage.from_event_id) } : {}),
            ...(stage.input_id ? { inputId: stage.input_id } : {}),
            ...(stage.status ? { status: stage.status } : {}),
          },
        },
        h("td", { class: "num", title: clock(stage.at) }, `+${span(stage.at - start)}`),
        h("td", { class: "kind" }, stage.kind),
        h("td", {}, details(stage, timeline.session_id)),
      ),
    );
    $("stages").tBodies[0].replaceChildren(...rows);
  }

  highlight(index) {
    const row = document.querySelector(`#stages tr[data-index="${index}"]`);
    if (!row) return;
    row.scrollIntoView({ block: "nearest" });
    row.classList.remove("fresh");
    void row.offsetWidth; // restart the animation
    row.classList.add("fresh");
  }

  mergeEvents(events, nextAfter) {
    const list = $("events");
    const fresh = [];
    for (const event of events) {
      if (this.events.has(event.id)) continue;
      this.events.set(event.id, event);
      fresh.push(event);
    }
    if (fresh.length) {
      const all = [...this.events.values()].sort((a, b) => a.id - b.id);
      list.replaceChildren(
        ...all.map((event) => {
          const data = JSON.stringify(event.data);
          return h(
            "li",
            { dataset: { eventId: String(event.id), type: event.type }, title: `${clock(event.at)}\n${data}` },
            // (first: the row's end is cut off where its data is long)
            h("button", { type: "button", class: "link", dataset: { action: "fork", at: String(event.id) }, title: "fork the session here: the run goes on from this event in a new session" }, "fork here"),
            h("span", { class: "id" }, `#${event.id}`),
            h("span", { class: "type" }, event.type),
            h("span", { class: "data" }, short(data, 160)),
          );
        }),
      );
    }
    if (!list.children.length) list.append(h("li", { class: "muted" }, "no event yet"));
    this.nextAfter = nextAfter;
    $("events-more").hidden = nextAfter === null || nextAfter === undefined;
  }

  async more() {
    if (this.nextAfter === null) return;
    this.paged = true;
    const page = await api(`${timelineApi(this.sessionId, this.runId)}${query({ after: this.nextAfter })}`);
    this.mergeEvents(page.events, page.next_after);
  }

  /** The run's questions still open, with their forms: the session's (they carry the answer's schema). */
  async renderQuestions(timeline) {
    const card = $("run-questions-card");
    const asked = timeline.stages.filter((s) => s.kind === "question").map((s) => s.input_id);
    const answered = new Set(timeline.stages.filter((s) => s.kind === "answered").map((s) => s.input_id));
    const open = asked.filter((id) => !answered.has(id));
    const key = `${timeline.run_id} ${timeline.status} ${open.join(",")}`;
    if (timeline.status !== "waiting" || !open.length) {
      card.hidden = true;
      this.questionsFor = key;
      return;
    }
    if (this.questionsFor === key) return;
    this.questionsFor = key;
    try {
      const session = await api(`/v1/admin/sessions/${encodeURIComponent(timeline.session_id)}`);
      const mine = session.questions.filter((q) => q.run_id === timeline.run_id);
      $("run-questions").replaceChildren(
        ...mine.map((question) => questionCard(timeline.session_id, question, { onDone: () => this.refresh(), onError: this.onError })),
      );
      card.hidden = mine.length === 0;
    } catch (error) {
      this.questionsFor = null;
      this.onError(error);
    }
  }

  /** Fork the session at event `at` of the run (null: re-run it, after its last recorded step), with
   * instructions for what follows if given, then open the run as it goes on in the fork. */
  async fork(at) {
    const what = at === null ? `Re-run ${this.runId} after its last recorded step` : `Fork the session at event ${at}`;
    const instructions = prompt(`${what}: the run goes on in a new session. Instructions for what follows (optional):`, "");
    if (instructions === null) return;
    const body = { ...(at === null ? {} : { at }), ...(instructions ? { instructions } : {}) };
    const base = `/v1/admin/sessions/${encodeURIComponent(this.sessionId)}/runs/${encodeURIComponent(this.runId)}`;
    const forked = await api(`${base}/fork`, { method: "POST", body });
    this.go(runPath(forked.session_id, forked.run_id));
  }

  async cancel() {
    if (!confirm(`Cancel run ${this.runId}?`)) return;
    await api(`/v1/admin/sessions/${encodeURIComponent(this.sessionId)}/runs/${encodeURIComponent(this.runId)}/cancel`, { method: "POST" });
    await this.refresh();
  }
}
