// The operator console (docs/console.md): one page, routed by location.pathname with history.pushState:
//   /console                               the overview
//   /console/sessions/{sid}                a session
//   /console/sessions/{sid}/runs/{rid}     a run's timeline
// It asks GET /v1/admin/whoami first: a 401 shows the key form (the key is kept for the tab, api.js); a 404
// of any read shows the not-found view (an unknown id and another tenant's answer alike). The live stream
// (stream.js) follows the view: the overview's events re-render the overview (and re-read a session shown);
// a timeline's stream adds `timeline` events for its run.

import { api, credential, NotFound, query, Unauthorized } from "./api.js";
import { $, runPath, sessionPath } from "./dom.js";
import { Overview } from "./overview.js";
import { SessionView } from "./session.js";
import { LiveStream } from "./stream.js";
import { TimelineView } from "./timeline.js";

const VIEWS = ["loading", "login", "not-found", "overview", "session", "timeline"];

let whoami = null;
let stream = null;
let current = { view: "loading" };
let routing = 0; // the latest route(): an older one that finishes late shows nothing

function showView(name) {
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  document.body.dataset.view = name;
}

function showError(error) {
  if (error instanceof Unauthorized) return showLogin();
  // A stream token, or a caller off loopback with auth off: the console needs another credential.
  if (error?.status === 403 && !whoami) return showLogin(error.message);
  if (error instanceof NotFound) return showNotFound(error.message);
  console.error(error);
  $("error-text").textContent = error?.message ?? String(error);
  $("error").hidden = false;
}

function showLogin(refused = "") {
  follow(null);
  whoami = null;
  $("who").textContent = "";
  $("key-refused").textContent = refused;
  $("key-refused").hidden = !refused;
  showView("login");
  $("key").focus();
}

function showNotFound(message) {
  follow(null);
  $("not-found-text").textContent = message || "No such session or run (or not one this key may see).";
  showView("not-found");
}

/** Follow the live stream at `url` (null: none); the same URL keeps the stream it has. */
function follow(url) {
  if (stream && stream.url === url) return;
  stream?.stop();
  stream = null;
  if (url === null) {
    setLive("off");
    return;
  }
  stream = new LiveStream(url, {
    onEvent: onLiveEvent,
    onState: (state) => {
      if (stream?.url === url) setLive(state);
    },
    onUnauthorized: () => showLogin("The key was refused."),
    onGone: () => {
      if (stream?.url !== url) return;
      stream = null;
      current = { view: "not-found" };
      showNotFound("It is gone: deleted, or no longer one this key may see.");
    },
  });
}

function setLive(state) {
  const live = $("live");
  live.dataset.state = state;
  live.textContent = state;
}

function onLiveEvent(type, data) {
  // How many snapshots the page has had: tests wait for the first before they measure.
  document.body.dataset.liveEvents = String(Number(document.body.dataset.liveEvents ?? 0) + 1);
  if (type === "overview") {
    if (current.view === "overview") overview.live(data);
    else if (current.view === "session") session.refresh();
  } else if (type === "timeline" && current.view === "timeline") {
    timeline.live(data);
  }
}

async function ensureWhoami() {
  if (whoami) return whoami;
  whoami = await api("/v1/admin/whoami");
  const parts = [whoami.who];
  if (whoami.tenant) parts.push(`tenant ${whoami.tenant}`);
  if (!whoami.auth) parts.push("auth off");
  $("who").textContent = parts.join(" · ");
  document.body.dataset.who = whoami.who;
  // A tenant's key sees its own tenant alone: a filter by tenant would choose nothing.
  $("filter-tenant-label").hidden = Boolean(whoami.tenant);
  if (whoami.tenant) {
    // A tenant's key is not shown the workers nor the throughput: they are every tenant's.
    document.querySelector('[data-empty-for="workers"]').textContent =
      "The workers and the throughput are every tenant's: an admin key shows them.";
  }
  return whoami;
}

function parse(pathname) {
  const path = pathname.replace(/\/+$/, "");
  if (path === "/console" || path === "") return { view: "overview" };
  const match = path.match(/^\/console\/sessions\/([^/]+)(?:\/runs\/([^/]+))?$/);
  if (!match) return { view: "unknown" };
  const sid = decodeURIComponent(match[1]);
  return match[2] ? { view: "timeline", sid, rid: decodeURIComponent(match[2]) } : { view: "session", sid };
}

async function route() {
  const seq = ++routing;
  const target = parse(location.pathname);
  $("error").hidden = true;
  try {
    await ensureWhoami();
    if (seq !== routing) return;
    if (target.view === "overview") {
      await overview.show();
      if (seq !== routing) return;
      current = target;
      showView("overview");
      follow("/v1/admin/stream");
    } else if (target.view === "session") {
      await session.show(target.sid);
      if (seq !== routing) return;
      current = target;
      showView("session");
      follow("/v1/admin/stream");
    } else if (target.view === "timeline") {
      await timeline.show(target.sid, target.rid);
      if (seq !== routing) return;
      current = target;
      showView("timeline");
      follow(`/v1/admin/stream${query({ session: target.sid, run: target.rid })}`);
    } else {
      current = target;
      showNotFound(`The console has no page at ${location.pathname}.`);
    }
  } catch (error) {
    if (seq !== routing) return;
    current = { view: error instanceof NotFound ? "not-found" : current.view };
    if (error instanceof NotFound && error.status === 410) {
      showNotFound(`${error.message}.`);
    } else if (error instanceof NotFound) {
      const what = target.rid ? `run ${target.rid} of session ${target.sid}` : target.sid ? `session ${target.sid}` : "this";
      showNotFound(`No ${what} (or not one this key may see).`);
    } else showError(error);
  }
}

function go(path) {
  if (path !== location.pathname + location.search) history.pushState(null, "", path);
  route();
}

/** The session or run a search names, or the not-found view. */
async function find(q) {
  try {
    await ensureWhoami();
    const found = await api(`/v1/admin/find${query({ q })}`);
    go(found.run_id ? runPath(found.session_id, found.run_id) : sessionPath(found.session_id));
  } catch (error) {
    if (error instanceof NotFound) {
      routing++;
      current = { view: "not-found" };
      showNotFound(`No session or run ${q} (or not one this key may see).`);
    } else showError(error);
  }
}

// Where a view's background work (a live re-read) finds its thing gone: deleted, or the key changed.
function gone(error) {
  if (error instanceof NotFound) {
    current = { view: "not-found" };
    showNotFound("It is gone: deleted, or no longer one this key may see.");
  } else showError(error);
}

const overview = new Overview({ onError: showError });
const session = new SessionView({ onError: showError, onGone: gone, go });
const timeline = new TimelineView({ onError: showError, onGone: gone, go });

document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a[data-nav]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin) return;
  event.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", route);
$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("q").value.trim();
  if (q) find(q);
});
$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) return;
  credential.set(key);
  try {
    await ensureWhoami();
  } catch (error) {
    credential.forget();
    if (error instanceof Unauthorized) return showLogin("That key was refused.");
    if (error?.status === 403) return showLogin(`That key may not open the console: ${error.message}`);
    return showError(error);
  }
  $("key").value = "";
  route();
});
$("error-close").addEventListener("click", () => {
  $("error").hidden = true;
});

route();
