// @langchain/langgraph-sdk 1.15's v2 client (`client.threads.stream`: the Agent Streaming Protocol's
// commands and event streams) against a tokentail gateway at /langgraph. Driven by test_langgraph_v2.py:
//
//   node langgraph_v2.mjs <scenario> <json options>   options: {gateway, threadId, token, assistantId, ...}
//
// Prints JSON lines: {"step": ...} as the scenario goes, then {"result": {...}}. Every SSE stream the
// client opens is read on the wire too (`wired`): each connection's frames, the ids it got, the
// Last-Event-ID it was opened with; a connection may be cut mid-answer, as a dropped network would.
import { Client } from "@langchain/langgraph-sdk";
import WebSocket from "ws";
import { play, say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const apiUrl = (gateway) => `${gateway}/langgraph`;
const DURABLE = /^\d+-\d+$/; // the ids langgraphjs PR #2805's client sends back as Last-Event-ID

// A fetch that reads every v2 event stream on the wire. `cutAfter`: the first stream with the
// `messages` channel is cut after that many text deltas; its reconnect (the same request again) is
// sent with `Last-Event-ID: <the last durable id it had>`, as PR #2805's client does, to `resumeAt`
// (another gateway) if given.
function wired({ cutAfter = null, resumeAt = null } = {}) {
  const connections = [];
  const seen = new Set(); // the ids of the events the client took in (`thread.onEvent`)
  let cutBody = null;
  let cutCursor = null;
  const fetchFn = async (url, init = {}) => {
    const isStream = String(url).endsWith("/stream/events");
    if (!isStream) return fetch(url, init);
    const headers = new Headers(init.headers);
    let target = String(url);
    if (cutBody !== null && init.body === cutBody) {
      if (cutCursor) headers.set("Last-Event-ID", cutCursor);
      if (resumeAt) target = target.replace(options.gateway, resumeAt);
      cutBody = null; // one reconnect is the resumed one
    }
    const connection = {
      filter: JSON.parse(init.body),
      url: target,
      lastEventId: headers.get("Last-Event-ID"),
      frames: [],
      cut: false,
    };
    connections.push(connection);
    const response = await fetch(target, { ...init, headers });
    if (!response.body) return response;
    connection.status = response.status;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    let deltas = 0;
    let cutAt = null; // the id the client is cut after, once it has taken that event in
    const body = new ReadableStream({
      async pull(controller) {
        if (cutAt !== null) {
          while (!seen.has(cutAt)) await new Promise((resolve) => setTimeout(resolve, 5));
          say({ step: "cut", lastEventId: cutAt });
          controller.error(new TypeError("network connection lost"));
          reader.cancel().catch(() => {});
          return;
        }
        const { done, value } = await reader.read().catch(() => ({ done: true }));
        if (done) return controller.close();
        buffered += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const frame = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = frame.split("\n").find((line) => line.startsWith("data: "));
          if (!data) continue;
          const event = JSON.parse(data.slice(6));
          connection.frames.push(event);
          if (event.params?.data?.event === "content-block-delta") deltas += 1;
        }
        controller.enqueue(value);
        // Cut where a chunk ends with a whole event the client will have: a delta, whose id is durable.
        const last = connection.frames.at(-1);
        const cutting = cutAfter !== null && buffered === "" && connection.filter.channels.includes("messages");
        if (cutting && deltas >= cutAfter && DURABLE.test(last?.event_id ?? "") && !connections.some((c) => c.cut)) {
          connection.cut = true;
          cutBody = init.body;
          cutCursor = cutAt = last.event_id;
        }
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { fetch: fetchFn, connections, seen };
}

function threadOf({ fetch, transport = "sse", assistantId = options.assistantId ?? "assistant" } = {}) {
  if (transport === "websocket") {
    // A browser WebSocket sends no headers: the token goes as `?token=`.
    const client = new Client({ apiUrl: apiUrl(options.gateway) });
    const sockets = [];
    const webSocketFactory = (url) => {
      const socket = new WebSocket(`${url}?token=${options.token}`);
      sockets.push(socket);
      return socket;
    };
    const thread = client.threads.stream(options.threadId, {
      assistantId,
      transport: "websocket",
      webSocketFactory,
      reconnectDelayMs: () => 50,
    });
    return { thread, sockets };
  }
  const client = new Client({ apiUrl: apiUrl(options.gateway), defaultHeaders: { Authorization: `Bearer ${options.token}` } });
  const thread = client.threads.stream(options.threadId, { assistantId, fetch, reconnectDelayMs: () => 50 });
  return { thread };
}

// Every event the thread's client took (once each: the SDK drops by event_id what it had).
function recorded(thread) {
  const events = [];
  thread.onEvent((event) => events.push(event));
  return events;
}

// A scenario that waits past `options.stuckAfter` ms says what it had, and fails.
function stuck(what) {
  setTimeout(() => {
    say({ error: `stuck: ${JSON.stringify(what())}` });
    process.exit(1);
  }, options.stuckAfter ?? 60_000).unref();
}

function messagesOf(thread) {
  const messages = [];
  const done = (async () => {
    for await (const message of thread.messages) {
      messages.push({ id: message.id, namespace: message.namespace, text: await message.text });
    }
  })();
  return { messages, done };
}

// A socket speaking the protocol's frames: `command` answers by id; events are kept, and told to `onEvent`.
async function rawSocket(url) {
  const socket = new WebSocket(url);
  const pending = new Map();
  const state = { socket, events: [], onEvent: () => {}, next: 1 };
  socket.on("message", (data) => {
    const frame = JSON.parse(String(data));
    if (frame.type === "event") {
      state.events.push(frame);
      state.onEvent(frame);
    } else pending.get(frame.id)?.(frame);
  });
  await new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
  });
  state.command = (method, params) =>
    new Promise((resolve, reject) => {
      const id = state.next++;
      pending.set(id, (frame) => (frame.type === "success" ? resolve(frame.result) : reject(new Error(frame.message))));
      socket.send(JSON.stringify({ id, method, params }));
    });
  return state;
}

const question = (text) => ({ messages: [{ role: "user", content: text }] });

function summary(events) {
  return events.map((e) => ({
    method: e.method,
    namespace: e.params.namespace,
    event: e.params.data?.event ?? e.params.data?.name ?? null,
    event_id: e.event_id ?? null,
    seq: e.seq ?? null,
    data: e.method === "messages" && e.params.data.event === "content-block-delta" ? undefined : e.params.data,
  }));
}

async function finish(thread, extra) {
  const tree = await thread.agent.getTree({});
  const state = await thread.state.get({ namespace: [] });
  await thread.close();
  say({ result: { tree, state, ...extra } });
}

await play({
  // A run started with run.start; its messages streamed, perhaps cut and resumed by Last-Event-ID.
  async stream() {
    const wire = wired({ cutAfter: options.cutAfter ?? null, resumeAt: options.resumeAt ?? null });
    const { thread } = threadOf({ fetch: wire.fetch });
    const events = recorded(thread);
    thread.onEvent((event) => wire.seen.add(event.event_id));
    const { messages, done } = messagesOf(thread);
    const started = await thread.run.start({ input: question(options.input ?? "hello") });
    await done;
    const output = await thread.output; // its messages made @langchain/core message instances
    const values = {
      messages: (output?.messages ?? []).map((m) => ({
        type: typeof m.getType === "function" ? m.getType() : m.type,
        id: m.id,
        content: m.content,
      })),
    };
    await finish(thread, { started, messages, values, events: summary(events), connections: wire.connections });
  },

  // The same over the WebSocket transport; with `dropSocket`, its socket is closed under it mid-answer:
  // the SDK opens another and subscribes again.
  async websocket() {
    const { thread, sockets } = threadOf({ transport: "websocket" });
    const events = recorded(thread);
    const { messages, done } = messagesOf(thread);
    let dropped = false;
    thread.onEvent((event) => {
      if (options.dropSocket && !dropped && event.params?.data?.event === "content-block-delta") {
        dropped = true;
        say({ step: "dropped" });
        sockets.at(-1).terminate();
      }
    });
    const started = await thread.run.start({ input: question(options.input ?? "hello") });
    await done;
    await finish(thread, { started, messages, events: summary(events), sockets: sockets.length });
  },

  // A run that asks: the question arrives as input.requested, input.respond answers it and the run goes on.
  async interrupt() {
    const wire = wired();
    const { thread } = threadOf({ fetch: wire.fetch });
    const events = recorded(thread);
    await thread.run.start({ input: question(options.input ?? "delete them") });
    const deadline = Date.now() + 60_000;
    while (!thread.interrupted || thread.interrupts.length === 0) {
      if (Date.now() > deadline) throw new Error("no interrupt came");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const interrupts = thread.interrupts.map((i) => ({ ...i }));
    say({ step: "interrupted", interrupts });
    const { messages, done } = messagesOf(thread);
    stuck(() => ({ messages, events: summary(events) }));
    await thread.input.respond({ namespace: [], interrupt_id: interrupts[0].interruptId, response: options.response });
    say({ step: "responded" });
    await done;
    say({ step: "done" });
    await finish(thread, { interrupts, messages, events: summary(events) });
  },

  // input.inject while the run streams: a steer, taken in by the run.
  async inject() {
    const wire = wired();
    const { thread } = threadOf({ fetch: wire.fetch });
    const events = recorded(thread);
    const { messages, done } = messagesOf(thread);
    let injected = null;
    thread.onEvent((event) => {
      if (injected === null && event.params?.data?.event === "content-block-delta") {
        injected = thread.input.inject({ namespace: [], message: { role: "user", content: options.steer } });
      }
    });
    await thread.run.start({ input: question(options.input ?? "hello") });
    const custom = await thread.subscribe({ channels: ["custom"] });
    const steers = [];
    const collected = (async () => {
      for await (const event of custom) if (event.params.data.name === "steer") steers.push(event.params.data.payload);
    })();
    await done;
    const answer = await injected;
    await collected;
    await finish(thread, { injected: answer ?? null, steers, messages, events: summary(events) });
  },

  // The built-in `team` agent: its child run shows on lifecycle in a namespace of its own.
  async team() {
    const wire = wired();
    const { thread } = threadOf({ fetch: wire.fetch, assistantId: "team" });
    const events = recorded(thread);
    const { messages, done } = messagesOf(thread);
    await thread.run.start({ input: question(options.input ?? "Ask the assistant what 12 * 7 is") });
    const toolEvents = await thread.subscribe({ channels: ["tools"] });
    const tools = [];
    const collected = (async () => {
      for await (const event of toolEvents) tools.push({ namespace: event.params.namespace, ...event.params.data });
    })();
    await done;
    await collected;
    await finish(thread, { messages, tools, events: summary(events) });
  },

  // The protocol's frames on raw sockets: a socket cut after `cutAfter` deltas; a second one (at
  // `resumeAt`) sends subscription.reconnect {last_event_id} before it subscribes, and goes on after it.
  async socketResume() {
    const url = (gateway) =>
      `${gateway.replace(/^http/, "ws")}/langgraph/threads/${options.threadId}/stream/events?token=${options.token}`;
    const channels = ["messages", "lifecycle"];
    const first = await rawSocket(url(options.gateway));
    let deltas = 0;
    let cursor = null;
    const cut = new Promise((resolve) => {
      first.onEvent = (event) => {
        if (event.params.data.event !== "content-block-delta" || ++deltas < options.cutAfter) return;
        cursor = event.event_id;
        first.socket.terminate();
        first.onEvent = () => {};
        resolve();
      };
    });
    await first.command("subscription.subscribe", { channels });
    const started = await first.command("run.start", { assistant_id: "assistant", input: question("hello") });
    await cut;
    say({ step: "cut", lastEventId: cursor });
    const second = await rawSocket(url(options.resumeAt ?? options.gateway));
    const ended = new Promise((resolve) => {
      second.onEvent = (event) => {
        if (event.method === "lifecycle" && event.params.namespace.length === 0 && event.params.data.event === "completed") resolve();
      };
    });
    const reconnected = await second.command("subscription.reconnect", { last_event_id: cursor });
    await second.command("subscription.subscribe", { channels });
    await ended;
    second.socket.close();
    say({ result: { started, cursor, reconnected, first: first.events, second: second.events } });
  },

  // The thread's checkpoints after a run, and a fork from its input's (no input: the run goes on from
  // there in a branch), waited for until the branch's newest checkpoint is its end.
  async checkpoints() {
    const { thread } = threadOf({});
    const { done } = messagesOf(thread);
    const started = await thread.run.start({ input: question("hello") });
    await done;
    const listed = await thread.state.listCheckpoints({ limit: 10 });
    const input = listed.checkpoints.find((checkpoint) => checkpoint.step === 0);
    const forked = await thread.state.fork({ checkpoint_id: input.id });
    let after = await thread.state.listCheckpoints({});
    while (after.checkpoints[0].metadata.parent_id !== input.id || after.checkpoints[0].metadata.next.length) {
      await new Promise((resolve) => setTimeout(resolve, 50)); // (polling the branch's end; the node timeout bounds it)
      after = await thread.state.listCheckpoints({});
    }
    const unknown = await thread.state.fork({ checkpoint_id: "999999" }).catch((error) => ({ code: error.code }));
    await thread.close();
    say({ result: { started, listed: listed.checkpoints, forked, after: after.checkpoints, unknown } });
  },

  // Refusals: an unknown command, an answer nothing waits for, a stream of an unknown channel.
  async refused() {
    const { thread } = threadOf({});
    const outcomes = {};
    for (const [name, call] of Object.entries({
      respondNothing: () => thread.input.respond({ namespace: [], interrupt_id: "i_none", response: true }),
    })) {
      try {
        outcomes[name] = { value: await call() };
      } catch (error) {
        outcomes[name] = { code: error.code ?? null, message: String(error.message ?? error) };
      }
    }
    const response = await fetch(`${apiUrl(options.gateway)}/threads/${options.threadId}/stream/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${options.token}`, "content-type": "application/json" },
      body: JSON.stringify({ channels: ["nonsense"] }),
    });
    outcomes.unknownChannel = { status: response.status, body: await response.json() };
    await thread.close();
    say({ result: outcomes });
  },
});
