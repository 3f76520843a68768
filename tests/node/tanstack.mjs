// TanStack AI's client (`@tanstack/ai-client`: ChatClient over fetchServerSentEvents, which speaks AG-UI
// and resumes by SSE ids) against tokentail's AG-UI endpoint, as its docs configure it. Driven by
// test_tanstack.py:
//
//   node tanstack.mjs <scenario> <json options>   options: {gateways, threadId, token, input}
//
// Prints JSON lines: {"step": ...} as the scenario goes (the test acts on them: kill a gateway or a
// worker, release a held run), then {"result": {...}}. Requests go through `balancer`: the first
// gateway until it stops answering, then the next, as a load balancer in front of replicas would.
import { pathToFileURL } from "node:url";
import { ChatClient, fetchServerSentEvents } from "@tanstack/ai-client";
import { play, say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const headers = { Authorization: `Bearer ${options.token}` };
const url = `${options.gateways[0]}/v1/ag-ui`;

function balancer(gateways) {
  let current = 0;
  const requests = [];
  async function fetchClient(input, init = {}) {
    const sent = new Headers(init.headers);
    for (;;) {
      const target = new URL(input);
      target.host = new URL(gateways[current]).host;
      requests.push({
        method: init.method ?? "GET",
        gateway: current,
        path: target.pathname + target.search,
        lastEventId: sent.get("Last-Event-ID"),
        runId: sent.get("X-Run-Id"),
      });
      try {
        return await fetch(target, init);
      } catch (error) {
        if (init.signal?.aborted || current + 1 >= gateways.length) throw error;
        current += 1; // that replica is gone: the next
      }
    }
  }
  return { fetchClient, requests };
}

function connection(fetchClient) {
  return fetchServerSentEvents(url, { headers, fetchClient, reconnect: { maxAttempts: 20, delayMs: 250 } });
}

// A fetch that says when a request fails ("refused", the first time), and counts the failures.
function noting(fetchClient) {
  const noted = { refusals: 0 };
  noted.fetch = async (input, init) => {
    try {
      return await fetchClient(input, init);
    } catch (error) {
      noted.refusals += 1;
      if (noted.refusals === 1) say({ step: "refused", error: String(error?.cause?.code ?? error) });
      throw error;
    }
  };
  return noted;
}

function assistantText(client) {
  return client
    .getMessages()
    .filter((message) => message.role === "assistant")
    .flatMap((message) => message.parts.filter((part) => part.type === "text").map((part) => part.content))
    .join("");
}

// Resolves once the client has had its run's terminal event (then lets the client apply it).
function ended(chunks) {
  return new Promise((resolve) => {
    chunks.onEnd = () => setTimeout(resolve, 0);
  });
}

function collector(onText) {
  const chunks = { types: [], runIds: new Set(), texts: 0 };
  chunks.onChunk = (chunk) => {
    chunks.types.push(chunk.type);
    if (chunk.type === "RUN_STARTED") chunks.runIds.add(chunk.runId);
    if (chunk.type === "TEXT_MESSAGE_CONTENT") onText?.(++chunks.texts);
    if (chunk.type === "RUN_FINISHED" || chunk.type === "RUN_ERROR") {
      chunks.finished = chunk;
      chunks.onEnd?.();
    }
  };
  return chunks;
}

function result(client, chunks, balanced, extra = {}) {
  say({
    result: {
      text: assistantText(client),
      error: client.getError()?.message ?? null,
      types: chunks.types,
      runIds: [...chunks.runIds],
      finished: chunks.finished ?? null,
      requests: balanced.requests,
      ...extra,
    },
  });
}

const scenarios = {
  // sendMessage; the test kills the first gateway -9 at "text" (the run held at its gate), then lets the
  // run go on: the client's reconnect (the same POST with Last-Event-ID) reaches the other gateway.
  async send() {
    const balanced = balancer(options.gateways);
    const chunks = collector((count) => count === 1 && say({ step: "text" }));
    let runId = null;
    const client = new ChatClient({
      connection: connection(balanced.fetchClient),
      threadId: options.threadId,
      onChunk: chunks.onChunk,
      onRunIdChange: (id) => (runId = id ?? runId),
    });
    await client.sendMessage(options.input);
    result(client, chunks, balanced, { runId });
  },

  // A page sends, and is closed after the first text (its run id kept, as TanStack AI persists it);
  // another joins the run by that id (joinRun: GET ?offset=-1&runId=), and the test kills the worker
  // -9 at "joined" before letting the run go on.
  async join() {
    const first = collector();
    let runId = null;
    let closing = null;
    const page = new ChatClient({
      connection: connection(),
      threadId: options.threadId,
      onChunk(chunk) {
        first.onChunk(chunk);
        if (chunk.type === "TEXT_MESSAGE_CONTENT" && !closing) closing = setTimeout(() => page.stop(), 0);
      },
      onRunIdChange: (id) => (runId = id ?? runId),
    });
    await page.sendMessage(options.input);
    say({ step: "closed", runId, types: first.types });
    const balanced = balancer(options.gateways);
    const chunks = collector((count) => count === 1 && say({ step: "joined" }));
    const done = ended(chunks);
    const joined = new ChatClient({
      connection: connection(balanced.fetchClient),
      threadId: options.threadId,
      initialResumeSnapshot: { resumeState: { threadId: options.threadId, runId } },
      onChunk: chunks.onChunk,
    });
    joined.attach();
    await done;
    result(joined, chunks, balanced, { runId });
  },

  // An approval: the run ends RUN_FINISHED with an interrupt; the page approves it (the interrupt
  // resolved with `{approved: true}`: resume[]), and the run goes on in the same message list.
  async approve() {
    const balanced = balancer(options.gateways);
    const chunks = collector();
    const client = new ChatClient({
      connection: connection(balanced.fetchClient),
      threadId: options.threadId,
      onChunk: chunks.onChunk,
    });
    await client.sendMessage(options.input);
    const interrupted = chunks.finished;
    const shown = client.getInterrupts().map(({ kind, canResolve, metadata }) => ({ kind, canResolve, metadata }));
    say({ step: "interrupted", shown });
    const done = ended(chunks);
    client.resolveInterrupts((interrupt) => {
      interrupt.resolveInterrupt({ approved: true });
    });
    await done;
    result(client, chunks, balanced, { interrupted, shown });
  },

  // The gateway is down as the client sends its message. Its fetch is the one tokentail serves for
  // TanStack AI (/static/tokentail-fetch.js, imported from where the gateway serves it:
  // options.fetchModule), which sends again a request the network failed; the test starts the gateway
  // again once it sees one fail ("refused").
  async refused() {
    const { retryingFetch } = await import(pathToFileURL(options.fetchModule).href);
    const balanced = balancer(options.gateways);
    const noted = noting(balanced.fetchClient);
    const chunks = collector();
    const client = new ChatClient({
      connection: connection(retryingFetch({ fetch: noted.fetch, retries: options.retries })),
      threadId: options.threadId,
      onChunk: chunks.onChunk,
    });
    await client.sendMessage(options.input);
    result(client, chunks, balanced, { refusals: noted.refusals });
  },

  // Questions not tied to a tool call (`ctx.ask` without `call_id`): each RUN_FINISHED with an
  // interrupt is answered with resolveInterrupts, the answer options.answers holds for its message,
  // until the run ends (with options.cancel, cancelled with cancelInterrupts instead). An interrupt
  // the client cannot resolve ends the scenario there (its resolver would not be called, and the run
  // would wait for good).
  async answer() {
    const balanced = balancer(options.gateways);
    const chunks = collector();
    const client = new ChatClient({
      connection: connection(balanced.fetchClient),
      threadId: options.threadId,
      onChunk: chunks.onChunk,
    });
    await client.sendMessage(options.input);
    const asked = [];
    while (chunks.finished?.outcome?.type === "interrupt") {
      const shown = client.getInterrupts().map(({ kind, canResolve, message }) => ({ kind, canResolve, message }));
      asked.push(shown);
      say({ step: "interrupted", shown });
      if (shown.length === 0 || !shown.every((interrupt) => interrupt.canResolve)) break;
      const done = ended(chunks);
      if (options.cancel) {
        client.cancelInterrupts();
        await done;
        break;
      }
      let resolved = 0;
      client.resolveInterrupts((interrupt) => {
        resolved += 1;
        interrupt.resolveInterrupt(options.answers[interrupt.message]);
      });
      if (resolved !== shown.length) break;
      await done;
    }
    result(client, chunks, balanced, { asked, interruptErrors: client.getInterruptState().interruptErrors });
  },
};

await play(scenarios);
