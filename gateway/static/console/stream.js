// The console's live stream (GET /v1/admin/stream), read with fetch() and a ReadableStream: EventSource
// cannot send the Authorization header, and the key must not go in a URL.
//
// Each event is a whole snapshot (`overview`, `timeline`), so nothing is lost by a drop: the client
// reconnects after a pause that grows (0.5 s up to 5 s) and sends the last id it had as `Last-Event-ID`;
// the gateway answers with the current snapshot first. A 401 stops it (the page asks for a key), a 404
// or 410 too (the session followed is gone); so does `stop()`. SSE framing per the HTML standard: lines end with CRLF, LF or CR; `data` lines join
// with LF; a blank line dispatches; a line starting with ':' is a comment (the gateway's pings).

import { authHeaders } from "./api.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;

export class LiveStream {
  /**
   * @param {string} url the stream's path and query
   * @param {{onEvent: (type: string, data: any, id: string|null) => void, onState: (state: string) => void,
   *          onUnauthorized: () => void, onGone?: () => void}} handlers
   */
  constructor(url, { onEvent, onState, onUnauthorized, onGone }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.onGone = onGone;
    this.lastEventId = null;
    this.controller = new AbortController();
    this.done = this.#run();
  }

  stop() {
    this.controller.abort();
  }

  async #run() {
    const { signal } = this.controller;
    let delay = FIRST_DELAY_MS;
    let first = true;
    while (!signal.aborted) {
      this.onState(first ? "connecting" : "reconnecting");
      first = false;
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
        const response = await fetch(this.url, { headers, signal, cache: "no-store" });
        if (response.status === 401) {
          this.onState("off");
          this.onUnauthorized();
          return;
        }
        if (response.status === 404 || response.status === 410) {
          this.onState("off"); // the session or run followed is gone: asking again will not bring it back
          this.onGone?.();
          return;
        }
        if (!response.ok || !response.body) throw new Error(`the live stream answered ${response.status}`);
        this.onState("live");
        delay = FIRST_DELAY_MS;
        await this.#read(response.body, signal);
      } catch (error) {
        if (signal.aborted) break;
        console.debug("console stream:", error);
      }
      if (signal.aborted) break;
      this.onState("reconnecting");
      await pause(delay, signal);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
    this.onState("off");
  }

  async #read(body, signal) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
    let buffer = "";
    let event = { type: "", data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A CR at the end may be the first half of a CRLF: keep it for the next chunk.
      let end;
      while ((end = lineEnd(buffer)) !== -1) {
        const line = buffer.slice(0, end);
        const width = buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1;
        buffer = buffer.slice(end + width);
        if (line === "") {
          if (event.id !== null) this.lastEventId = event.id;
          if (event.data.length) this.#dispatch(event.type || "message", event.data.join("\n"), event.id);
          event = { type: "", data: [], id: null };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") event.data.push(value);
        else if (field === "event") event.type = value;
        else if (field === "id" && !value.includes("\0")) event.id = value;
      }
    }
  }

  #dispatch(type, text, id) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
    try {
      this.onEvent(type, data, id);
    } catch (error) {
      console.error("console stream: rendering", type, error);
    }
  }
}

/** Where the first complete line of `buffer` ends, or -1 (a lone CR at the very end is not yet one). */
function lineEnd(buffer) {
  for (let i = 0; i < buffer.length; i++) {
    const c = buffer[i];
    if (c === "\n") return i;
    if (c === "\r") return i + 1 < buffer.length ? i : -1;
  }
  return -1;
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
