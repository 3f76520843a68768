// A session: its transcript as the demo page shows it, its runs as a tree (child runs under the run that
// spawned them, by parent_run_id), its open questions with their forms, and its deletion. Read again
// (coalesced) on each `overview` event of the live stream: something changed somewhere.

import { actionFailed, api } from "./api.js";
import { $, clock, h, nav, runPath, short, statusChip } from "./dom.js";
import { questionCard } from "./questions.js";
import { renderMarkdown } from "/static/markdown.js";

const sessionApi = (sid) => `/v1/admin/sessions/${encodeURIComponent(sid)}`;

function runTree(runs) {
  const ids = new Set(runs.map((run) => run.run_id));
  const children = new Map();
  for (const run of runs) {
    const parent = run.parent_run_id && ids.has(run.parent_run_id) ? run.parent_run_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(run);
  }
  const branch = (parent) =>
    (children.get(parent) ?? []).map((run) =>
      h(
        "li",
        { dataset: { runId: run.run_id, status: run.status, parentRunId: run.parent_run_id ?? "" } },
        h(
          "div",
          { class: "node" },
          nav(runPath(run.session_id, run.run_id), h("code", {}, run.run_id)),
          statusChip(run.status),
          h("span", {}, run.name || run.agent || ""),
          run.attempt > 1 ? h("span", { class: "muted" }, `attempt ${run.attempt}`) : "",
          h("span", { class: "muted" }, clock(run.queued_at)),
          h("span", { class: "muted input", title: run.input ?? "" }, short(run.input, 80)),
        ),
        children.has(run.run_id) ? h("ul", {}, branch(run.run_id)) : "",
      ),
    );
  return branch(null);
}

function bubble(line, sessionId) {
  const text = line.text ?? line.content ?? "";
  const via = line.run_id ? h("span", { class: "via" }, nav(runPath(sessionId, line.run_id), line.run_id)) : "";
  if (line.role === "user") return h("div", { class: "bubble user", dataset: { runId: line.run_id ?? "" } }, text, via);
  const el = h("div", { class: "bubble assistant", dataset: { runId: line.run_id ?? "", status: line.status ?? "" } });
  if (text) el.append(renderMarkdown(text), via);
  else el.append(h("span", { class: "muted" }, line.status ? `no answer (${line.status})` : "no answer yet"), via);
  return el;
}

export class SessionView {
  constructor({ onError, onGone, go }) {
    this.onError = onError;
    this.onGone = onGone;
    this.go = go;
    this.sessionId = null;
    this.loading = null;
    this.again = false;
    this.deleting = null; // the session this view is deleting, if it is
    $("delete-session").addEventListener("click", () => this.delete().catch((error) => this.onError(actionFailed(error))));
  }

  async show(sessionId) {
    this.sessionId = sessionId;
    this.render(await api(sessionApi(sessionId)));
  }

  /** Read it again: one request at a time, the last asked for wins. */
  refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    const sessionId = this.sessionId;
    this.loading = (async () => {
      try {
        do {
          this.again = false;
          const session = await api(sessionApi(sessionId));
          if (this.sessionId === sessionId) this.render(session);
        } while (this.again);
      } catch (error) {
        // (a read answered 404 while the view deletes its session is the delete's own doing)
        if (this.sessionId === sessionId && this.deleting !== sessionId) this.onGone(error);
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  render(session) {
    $("session-id").textContent = session.session_id;
    $("view-session").dataset.sessionId = session.session_id;
    const user = session.user ? ` · user ${session.user}` : "";
    $("session-meta").textContent = `tenant ${session.tenant ?? "–"}${user} · created ${clock(session.created_at)} · ${session.runs.length} run(s)`;
    const transcript = $("transcript");
    const atBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 32;
    transcript.replaceChildren(...session.transcript.map((line) => bubble(line, session.session_id)));
    if (!session.transcript.length) transcript.append(h("p", { class: "muted" }, "Nothing said yet."));
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;
    $("run-tree").replaceChildren(...runTree(session.runs));
    const questions = $("session-questions");
    questions.replaceChildren(
      ...session.questions.map((question) =>
        questionCard(session.session_id, question, { onDone: () => this.refresh(), onError: this.onError, showRun: true }),
      ),
    );
    document.querySelector('[data-empty-for="session-questions"]').hidden = session.questions.length > 0;
  }

  async delete() {
    const sessionId = this.sessionId;
    if (!confirm(`Delete session ${sessionId}, its runs and its events? This cannot be undone.`)) return;
    this.deleting = sessionId;
    try {
      await api(sessionApi(sessionId), { method: "DELETE" });
    } finally {
      this.deleting = null;
    }
    this.sessionId = null; // a read still on its way reads a session this view no longer shows
    this.go("/console");
  }
}
