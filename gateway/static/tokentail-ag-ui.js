// TokentailAgent: @ag-ui/client's HttpAgent for a tokentail gateway, with what HttpAgent lacks.
//
//   import { TokentailAgent } from "./tokentail-ag-ui.js";   // served at /static/tokentail-ag-ui.js
//   const agent = new TokentailAgent({ url: "https://gateway.example/v1/ag-ui", threadId: chatId,
//                                      headers: { Authorization: `Bearer ${chatToken}` } });
//   await agent.runAgent();        // POST {url}: a run with the last user message
//   await agent.connectAgent();    // GET {url}/{threadId}: a page (re)loaded mid-answer catches up
//   agent.abortRun();              // POST {url}/{threadId}/stop: cancels the run shown, then hangs up
//
// - A connection that drops mid-stream is resumed within the same run: the agent asks again with the
//   id of the last event it fully received (`Last-Event-ID`) and reads on, so subscribers see one
//   stream with nothing missing and nothing twice. Only whole events are passed on: an event cut
//   in the middle is read again whole.
// - A first request the network fails (a gateway not up yet, or restarting) is sent again, with the
//   waits a reconnect has: runAgent's POST (the same runId and message make no second run) and
//   connectAgent's GET. An HTTP error is not retried, and the last failure fails the run.
// - connectAgent() rebuilds: a MESSAGES_SNAPSHOT of the thread, then the active run (or one that
//   ended moments ago) from its start; with nothing to show it completes at once.
// - abortRun() stops the run in tokentail; HttpAgent's only closes the connection. It names the run
//   this agent was shown (RUN_STARTED's runId): a stop that crosses that run's end never cancels
//   the run that came after it.
//
// It imports "@ag-ui/client" by name: bundle it with your app, or map the name in an import map.
import { HttpAgent, enforceOutgoingInput, runHttpRequest, transformHttpEventStream } from "@ag-ui/client";

export class TokentailAgent extends HttpAgent {
  // Tries in a row before a dropped stream (or a first request the network fails) fails the run, and
  // the first wait (doubling, to 5 s): 8 cover about 23 s.
  maxReconnects = 8;
  reconnectDelayMs = 250;
  // The id of the last event fully received. A plain property (no #fields): AbstractAgent.clone()
  // makes clones with Object.create, which private members would break.
  lastEventId = null;
  // tokentail's id of the last run whose RUN_STARTED came: the run abortRun() stops.
  shownRunId = null;
  // The AG-UI version connectAgent() declares (its input's protocolVersion), for the stream's RUN_STARTED.
  protocolVersion = null;

  run(input) {
    return this.events(input, () => this.fetch(this.url, this.requestInit(enforceOutgoingInput(input))));
  }

  connect(input) {
    this.protocolVersion = input.protocolVersion ?? null; // the version this client declares, as runAgent's input does
    return this.events(input, () => this.getThread(input.threadId, null));
  }

  connectAgent(parameters, subscriber) {
    // As runAgent does: a stream aborted before must not abort this one.
    this.abortController = parameters?.abortController ?? new AbortController();
    return super.connectAgent(parameters, subscriber);
  }

  abortRun() {
    const named = this.shownRunId === null ? {} : {
      headers: { ...this.headers, "Content-Type": "application/json" },
      body: JSON.stringify({ run_id: this.shownRunId }),
    };
    const stopping = this.fetch(`${this.threadUrl(this.threadId)}/stop`, { method: "POST", headers: this.headers, ...named });
    stopping.catch((error) => console.warn("tokentail: stopping the run failed", error));
    super.abortRun();
    return stopping;
  }

  // The wait before try `failures + 1` of a request the network failed.
  backoff(failures) {
    return Math.min(this.reconnectDelayMs * 2 ** failures, 5000);
  }

  // The first response of a stream: a request the network fails is sent again, after the waits a
  // reconnect has (a gateway not up yet, or restarting). An HTTP error is an answer: returned as it is.
  async firstResponse(request) {
    const signal = this.abortController.signal;
    for (let failures = 0; ; failures += 1) {
      try {
        return await request();
      } catch (error) {
        if (signal.aborted || failures >= this.maxReconnects) throw error;
        await pause(this.backoff(failures), signal);
      }
    }
  }

  threadUrl(threadId) {
    return `${this.url}/${encodeURIComponent(threadId)}`;
  }

  async getThread(threadId, lastEventId) {
    const headers = { ...this.headers, Accept: "text/event-stream" };
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    const version = this.protocolVersion ? `?protocolVersion=${encodeURIComponent(this.protocolVersion)}` : "";
    const response = await this.fetch(this.threadUrl(threadId) + version, {
      method: "GET",
      headers,
      signal: this.abortController.signal,
    });
    // 204: nothing (more) to show. An empty stream, which HttpAgent's reader takes; it refuses no body.
    return response.status === 204 ? new Response("", { headers: { "Content-Type": "text/event-stream" } }) : response;
  }

  events(input, request) {
    return transformHttpEventStream(
      runHttpRequest(() => this.resumable(input.threadId, request)),
      this.debugLogger,
    );
  }

  // The response, whose body goes on across dropped connections. Every frame the gateway sends has an
  // id (`<event id>.<k>` for all but the last frame an event became): frames are passed on a whole
  // event at a time, so a reconnect never starts inside one.
  async resumable(threadId, request) {
    const first = await this.firstResponse(request);
    if (!first.ok || !first.body) return first;
    const agent = this;
    const signal = this.abortController.signal;
    let decoder = new TextDecoder();
    const encoder = new TextEncoder();
    let reader = first.body.getReader();
    let partial = ""; // the start of a line
    let frames = ""; // whole frames of an event whose last frame has not come yet
    let frameId = null; // the id: line of the frame being read
    let failures = 0;

    function runStarted(data) {
      try {
        const event = JSON.parse(data);
        if (event.type === "RUN_STARTED") agent.shownRunId = event.runId;
      } catch {
        // not a whole JSON event: nothing to learn from it
      }
    }

    function wholeEvents(text) {
      const lines = (partial + text).split("\n");
      partial = lines.pop();
      let out = "";
      for (const line of lines) {
        frames += line + "\n";
        const bare = line.endsWith("\r") ? line.slice(0, -1) : line;
        if (bare.startsWith("data:") && bare.includes('"RUN_STARTED"')) runStarted(bare.slice(5));
        if (bare.startsWith("id:")) frameId = bare.slice(3).trim();
        else if (bare === "" && frameId !== null) {
          // An event's last frame has its id alone; those before it `<id>.<k>`: pass an event on whole.
          if (!frameId.includes(".")) {
            out += frames;
            frames = "";
            agent.lastEventId = frameId;
            failures = 0;
          }
          frameId = null;
        }
      }
      return out;
    }

    async function reconnect(error) {
      reader.cancel().catch(() => {});
      decoder = new TextDecoder();
      partial = frames = "";
      frameId = null;
      for (;;) {
        if (signal.aborted || agent.lastEventId === null || failures >= agent.maxReconnects) throw error;
        const wait = agent.backoff(failures);
        failures += 1;
        await pause(wait, signal);
        let response;
        try {
          response = await agent.getThread(threadId, agent.lastEventId);
        } catch (fetchError) {
          error = fetchError;
          continue;
        }
        if (!response.ok) throw new Error(`tokentail: resuming the stream got HTTP ${response.status}`);
        reader = response.body.getReader();
        return;
      }
    }

    const body = new ReadableStream({
      async pull(controller) {
        for (;;) {
          let chunk;
          try {
            chunk = await reader.read();
          } catch (error) {
            await reconnect(error);
            continue;
          }
          if (chunk.done) {
            const rest = frames + partial + decoder.decode();
            if (rest) controller.enqueue(encoder.encode(rest));
            controller.close();
            return;
          }
          const out = wholeEvents(decoder.decode(chunk.value, { stream: true }));
          if (out) {
            controller.enqueue(encoder.encode(out));
            return;
          }
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: first.status, headers: first.headers });
  }
}

// Resolves after `ms`, or at once when `signal` aborts.
function pause(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
