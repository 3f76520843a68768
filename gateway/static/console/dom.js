// Small helpers the views share: building elements, links that route in the page, times as people read them.

export const $ = (id) => document.getElementById(id);

/** An element: `h("td", {class: "num", dataset: {runId: "r_1"}}, "text", child, ...)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A link the page follows itself (history.pushState), to one of the console's paths. */
export function nav(href, ...children) {
  return h("a", { href, "data-nav": true }, ...children);
}

export const sessionPath = (sid) => `/console/sessions/${encodeURIComponent(sid)}`;
export const runPath = (sid, rid) => `${sessionPath(sid)}/runs/${encodeURIComponent(rid)}`;

export function statusChip(status) {
  return h("span", { class: "chip", dataset: { status: status ?? "" } }, status ?? "–");
}

/** Replace `tbody`'s rows; mark the empty note (`[data-empty-for=<id>]`) shown when there are none. */
export function fillRows(table, rows) {
  table.tBodies[0].replaceChildren(...rows);
  const note = document.querySelector(`[data-empty-for="${table.id}"]`);
  if (note) note.hidden = rows.length > 0;
}

const pad = (n) => String(n).padStart(2, "0");

/** An epoch time as the local clock shows it, with its date: yyyy-mm-dd hh:mm:ss. */
export function clock(at) {
  if (at === null || at === undefined) return "–";
  const when = new Date(at * 1000);
  const time = `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ${time}`;
}

/** A span of seconds, short: 850 ms, 4.2 s, 3 min 5 s, 2 h 10 min. */
export function span(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export const ago = (at) => (at ? `${span(Date.now() / 1000 - at)} ago` : "–");

export function short(text, length = 80) {
  const flat = String(text ?? "").replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}
