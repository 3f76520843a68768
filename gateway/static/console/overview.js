// The overview: tenants' lines, workers alive, two charts, runs failed or taken over lately, and the runs
// list (filters, paging by next_cursor). The live stream's `overview` events re-render it; the runs list's
// first page is read again on each (coalesced: one request at a time), unless the operator paged on.

import { actionFailed, api, query } from "./api.js";
import { $, clock, fillRows, h, nav, runPath, short, span, statusChip } from "./dom.js";

const PAGE = 50;

export function runRow(run, { when = "queued_at", last = "input" } = {}) {
  const row = h(
    "tr",
    { dataset: { runId: run.run_id, sessionId: run.session_id, status: run.status, tenant: run.tenant ?? "" } },
    h("td", {}, nav(runPath(run.session_id, run.run_id), h("code", {}, run.run_id))),
    h("td", {}, run.tenant ?? "–"),
    h("td", {}, run.user ?? "–"),
    h("td", {}, run.agent ?? "–"),
    h("td", {}, statusChip(run.status)),
    h("td", { class: "num" }, run.attempt ?? "–"),
    h("td", { title: clock(run[when] ?? run.started_at) }, clock(run[when] ?? run.started_at)),
    last === "error"
      ? h("td", { class: "error", title: run.error ?? "" }, run.error ?? "")
      : h("td", { class: "input", title: run.input ?? "" }, short(run.input, 60)),
  );
  return row;
}

function tenantRow(tenant) {
  return h(
    "tr",
    { dataset: { tenant: tenant.tenant, parked: String(Boolean(tenant.parked)) } },
    h("td", {}, tenant.tenant),
    h("td", { class: "num", dataset: { field: "running" } }, tenant.running),
    h("td", { class: "num", dataset: { field: "in-line" } }, tenant.waiting),
    h("td", { class: "num" }, tenant.cap ? tenant.cap : "none"),
    h("td", {}, tenant.parked ? h("span", { class: "chip parked", title: "at its cap with runs waiting" }, "parked") : ""),
  );
}

function workerRow(worker) {
  const runs = worker.runs ?? [];
  const shown = runs.slice(0, 3).map((run) => nav(runPath(run.session_id, run.run_id), h("code", {}, run.run_id)));
  const links = shown.flatMap((link, i) => (i ? [" ", link] : [link]));
  const running = worker.running ?? runs.length;
  if (running > shown.length) links.push(` +${running - shown.length}`);
  return h(
    "tr",
    { dataset: { worker: worker.worker, alive: String(Boolean(worker.alive)) } },
    h("td", {}, h("code", { title: worker.worker }, short(worker.worker, 28)), worker.alive ? "" : [" ", h("span", { class: "chip dead" }, "dead")]),
    h("td", {}, `${worker.host ?? "?"} · ${worker.pid ?? "?"}`),
    h("td", {}, worker.version ?? "–"),
    h("td", { class: "num", dataset: { heartbeatAt: worker.heartbeat_at ?? "" }, title: clock(worker.heartbeat_at) }, heartbeatAge(worker.heartbeat_at)),
    h("td", { class: "num", dataset: { field: "slots" } }, `${running}/${worker.slots ?? "?"}`),
    h("td", {}, links),
  );
}

function heartbeatAge(at) {
  return at ? span(Date.now() / 1000 - at) : "–";
}

/** A small line chart (uPlot, vendored) of one series of the metrics' points. */
class Chart {
  constructor(target, label, colour) {
    this.target = target;
    this.label = label;
    this.colour = colour;
    this.plot = null;
    // The card's width changes with the window, and is 0 while the view is hidden (its first render).
    new ResizeObserver(() => {
      const width = this.target.clientWidth;
      if (this.plot && width && Math.abs(this.plot.width - width) > 4) this.plot.setSize({ width, height: 130 });
    }).observe(this.target);
  }

  render(xs, ys) {
    const width = Math.max(240, this.target.clientWidth || 400);
    const hasData = ys.some((y) => y !== null && y !== undefined);
    this.target.dataset.points = String(xs.length);
    if (!hasData || typeof uPlot === "undefined") {
      this.plot?.destroy();
      this.plot = null;
      this.target.replaceChildren(h("div", { class: "nodata" }, xs.length ? "nothing in these minutes" : "no data yet"));
      return;
    }
    if (this.plot) {
      this.plot.setData([xs, ys]);
      if (Math.abs(this.plot.width - width) > 4) this.plot.setSize({ width, height: 130 });
      return;
    }
    this.target.replaceChildren();
    const style = getComputedStyle(document.documentElement);
    const muted = style.getPropertyValue("--muted").trim() || "#667085";
    const grid = style.getPropertyValue("--line").trim() || "#e3e6eb";
    const colour = style.getPropertyValue(this.colour).trim() || "#2f6fed";
    const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: "11px system-ui" };
    this.plot = new uPlot(
      {
        width,
        height: 130,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_, min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [{ ...axis, values: (_, ticks) => ticks.map((at) => clock(at).slice(-8, -3)) }, { ...axis, size: 44 }],
        series: [{}, { label: this.label, stroke: colour, width: 1.5, fill: `${colour}22`, spanGaps: false, points: { show: false } }],
      },
      [xs, ys],
      this.target,
    );
  }
}

export class Overview {
  constructor({ onError }) {
    this.onError = onError;
    this.filters = { status: "", tenant: "", user: "" };
    this.runs = [];
    this.nextCursor = null;
    this.scanned = 0;
    this.paged = false;
    this.loading = null;
    this.again = false;
    this.seen = new Set();
    this.tps = new Chart($("chart-tps"), "tokens/s", "--accent");
    this.ftl = new Chart($("chart-ftl"), "first token ms", "--warn");
    $("runs-filter").addEventListener("submit", (event) => {
      event.preventDefault();
      this.filters = { status: $("filter-status").value, tenant: $("filter-tenant").value.trim(), user: $("filter-user").value.trim() };
      this.paged = false;
      this.refreshRuns().catch(this.onError);
    });
    $("runs-more").addEventListener("click", () => this.more().catch(this.onError));
    $("slots-audit").addEventListener("click", () => this.audit().catch((error) => this.onError(actionFailed(error))));
    setInterval(() => {
      for (const cell of document.querySelectorAll("#workers [data-heartbeat-at]")) {
        cell.textContent = heartbeatAge(Number(cell.dataset.heartbeatAt) || null);
      }
    }, 1000);
  }

  async show() {
    this.paged = false; // a fresh look at the overview starts from the first page again
    const [overview] = await Promise.all([api("/v1/admin/overview"), this.refreshRuns()]);
    this.render(overview);
  }

  /** An `overview` event of the live stream (or the first read). */
  live(overview) {
    this.render(overview);
    if (this.paged) return;
    // The runs active now come with the snapshot: shown at once, before the list is read again.
    const filtered = this.filters.status || this.filters.tenant || this.filters.user;
    if (Array.isArray(overview.active) && !filtered) this.mergeActive(overview.active);
    this.refreshRuns().catch(this.onError);
  }

  mergeActive(active) {
    const byId = new Map(this.runs.map((run) => [run.run_id, run]));
    for (const run of active) {
      if (byId.has(run.run_id)) Object.assign(byId.get(run.run_id), run);
      else this.runs.push(run);
    }
    this.runs.sort((a, b) => (b.queued_at ?? 0) - (a.queued_at ?? 0));
    this.renderRuns();
  }

  render(overview) {
    const counts = overview.counts ?? {};
    for (const el of document.querySelectorAll("#counts [data-count]")) {
      el.querySelector("b").textContent = counts[el.dataset.count] ?? 0;
    }
    fillRows($("tenants"), (overview.tenants ?? []).map(tenantRow));
    fillRows($("workers"), (overview.workers ?? []).map(workerRow));
    fillRows($("recent"), (overview.recent ?? []).map((run) => runRow(run, { when: "finished_at", last: "error" })));
    const metrics = overview.metrics ?? { points: [] };
    const points = metrics.points ?? [];
    $("chart-span").textContent = points.length ? `last ${span(points.length * (metrics.step_seconds ?? 5))}, per ${metrics.step_seconds ?? 5} s` : "";
    const xs = points.map((p) => p.at);
    this.tps.render(xs, points.map((p) => p.tokens_per_second));
    this.ftl.render(xs, points.map((p) => p.first_token_ms));
  }

  /** The runs list's first page, with the filters; one request at a time, the last asked for wins. */
  async refreshRuns() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      try {
        do {
          this.again = false;
          const page = await api(`/v1/admin/runs${query({ ...this.filters, limit: PAGE })}`);
          if (this.paged) return; // the operator went on meanwhile: keep what they look at
          this.runs = page.runs;
          this.nextCursor = page.next_cursor;
          this.scanned = page.scanned;
          this.renderRuns();
        } while (this.again);
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  async more() {
    if (!this.nextCursor) return;
    this.paged = true;
    const page = await api(`/v1/admin/runs${query({ ...this.filters, cursor: this.nextCursor, limit: PAGE })}`);
    const known = new Set(this.runs.map((run) => run.run_id));
    this.runs.push(...page.runs.filter((run) => !known.has(run.run_id)));
    this.nextCursor = page.next_cursor;
    this.scanned += page.scanned;
    this.renderRuns();
  }

  renderRuns() {
    const rows = this.runs.map((run) => runRow(run));
    for (const row of rows) {
      if (this.seen.size && !this.seen.has(row.dataset.runId)) row.classList.add("fresh");
    }
    const first = this.seen.size === 0;
    for (const run of this.runs) this.seen.add(run.run_id);
    if (first && !this.runs.length) this.seen.add(""); // later runs are new ones
    fillRows($("runs"), rows);
    $("runs-more").hidden = !this.nextCursor;
    $("runs-scanned").textContent = `${this.runs.length} shown, ${this.scanned} index entries read`;
    $("runs-note").textContent = this.paged ? "paged: not updated live (Filter to start again)" : "newest first, live";
  }

  async audit() {
    if (!confirm("Give back every slot held by a run that no longer runs (what the slot audit does)?")) return;
    const result = await api("/v1/admin/slots/audit", { method: "POST" });
    $("audit-result").textContent = `${result.given_back} slot(s) given back at ${clock(Date.now() / 1000)}`;
  }
}
