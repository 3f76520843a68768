// `@a2a-js/sdk`'s client (pinned by this folder's lockfile) against tokentail gateways, as docs/a2a.md
// configures it: discovery from the agent card, a stream dropped and resumed on the other gateway with
// the resume extension's Last-Event-ID, a question, a cancel, push configs, a wrong key. Driven by
// test_a2a.py:
//
//   node a2a.mjs <scenario> <json options>   options: {gateways: [url, url], apiKey, agent, hook}
//
// Prints JSON lines: {"step": ...} as the scenario goes (the test may act on them: kill the worker),
// then {"result": {...}} with what the client saw.
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory, RestTransportFactory } from "@a2a-js/sdk/client";
import { Role, TaskState } from "@a2a-js/sdk";
import { play, say } from "./driver.mjs";

const RESUME = "urn:tokentail:a2a:resume:v1";
const options = JSON.parse(process.argv[3]);

async function client(i, { apiKey = options.apiKey, agent = options.agent, rest = false } = {}) {
  const fetchImpl = (url, init = {}) =>
    fetch(url, { ...init, headers: { ...(init.headers ?? {}), Authorization: `Bearer ${apiKey}` } });
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl }), new RestTransportFactory({ fetchImpl })],
      preferredTransports: rest ? ["HTTP+JSON"] : ["JSONRPC"],
    }),
  );
  return factory.createFromUrl(options.gateways[i], `/a2a/${agent}/.well-known/agent-card.json`);
}

function message(parts, ids = {}) {
  return { message: { messageId: crypto.randomUUID(), role: Role.ROLE_USER, parts, ...ids } };
}
const text = (value) => ({ content: { $case: "text", value } });
const data = (value) => ({ content: { $case: "data", value } });

// What a client keeps of a stream: the Task it opens with, then each update applied.
function fold(events, start = { text: [], state: null }) {
  let { text: parts, state } = start;
  const generations = [];
  for (const { payload } of events) {
    const value = payload.value;
    generations.push(value.metadata?.[RESUME]?.generation ?? null);
    if (payload.$case === "task") {
      parts = value.artifacts.flatMap((a) => a.parts.map((p) => p.content.value));
      state = value.status.state;
    } else if (payload.$case === "statusUpdate") {
      state = value.status.state;
    } else if (payload.$case === "artifactUpdate") {
      const added = value.artifact.parts.map((p) => p.content.value);
      parts = value.append ? [...parts, ...added] : added;
    }
  }
  return { text: parts, state, generations };
}

const stateName = (state) => TaskState[state];

const scenarios = {
  // Streamed on one gateway, dropped after some text (the test may kill the worker then), resumed on
  // the other with Last-Event-ID: the answer whole, nothing twice.
  async resume() {
    const first = await client(0);
    const seen = [];
    const aborting = new AbortController();
    try {
      for await (const event of first.sendMessageStream(message([text("count")]), { signal: aborting.signal })) {
        seen.push(event);
        if (event.payload.$case === "artifactUpdate" && seen.length > 6) break;
      }
    } finally {
      aborting.abort();
    }
    const taskId = seen[0].payload.value.id;
    const lastEventId = seen.at(-1).payload.value.metadata[RESUME].eventId;
    say({ step: "cut", taskId, lastEventId });
    const second = await client(1);
    const rest = [];
    const resumed = { serviceParameters: { "Last-Event-ID": lastEventId } };
    for await (const event of second.resubscribeTask({ id: taskId }, resumed)) rest.push(event);
    const before = fold(seen);
    const after = fold(rest.slice(1), fold(seen));
    const task = await second.getTask({ id: taskId });
    return {
      opensWith: rest[0].payload.$case,
      openedAt: rest[0].payload.value.metadata[RESUME].generation,
      lastSeen: before.generations.at(-1),
      generations: [...before.generations, ...after.generations],
      text: after.text.join(""),
      openedText: fold(rest.slice(0, 1)).text.join(""),
      keptText: before.text.join(""),
      state: stateName(after.state),
      got: { state: stateName(task.status.state), text: task.artifacts[0].parts[0].content.value },
    };
  },

  // A question, answered by the next message on its task from the other gateway (over HTTP+JSON).
  async question() {
    const asked = await collect((await client(0)).sendMessageStream(message([text("delete")])));
    const question = asked.at(-1).payload.value.status.message;
    const other = await client(1, { rest: true });
    const reply = message([data({ approved: true })], { taskId: asked.taskId });
    const answered = fold(await collect(other.sendMessageStream(reply)));
    return {
      asked: stateName(fold(asked).state),
      prompt: question.parts[0].content.value,
      needs: question.parts[1].content.value,
      answered: stateName(answered.state),
      text: answered.text.join(""),
    };
  },

  // Started without waiting, cancelled from the other gateway; push configs on it; a wrong key.
  async cancel() {
    const first = await client(0);
    const started = await first.sendMessage({ ...message([text("search")]), configuration: { returnImmediately: true } });
    const task = started.task ?? started;
    const other = await client(1);
    const config = await other.createTaskPushNotificationConfig({
      taskId: task.id,
      id: "hook-1",
      url: options.hook,
      token: "t1",
      authentication: { scheme: "Bearer", credentials: "receiver-secret" },
    });
    const listed = await first.listTaskPushNotificationConfig({ taskId: task.id });
    const cancelled = await other.cancelTask({ id: task.id });
    say({ step: "cancelled", taskId: task.id });
    let refused = null;
    try {
      await (await client(0, { apiKey: "wrong-key" })).getTask({ id: task.id });
    } catch (error) {
      refused = { name: error.constructor.name, message: String(error.message).slice(0, 200) };
    }
    return {
      started: stateName(task.status.state),
      cancelled: stateName(cancelled.status.state),
      config: { id: config.id, url: config.url },
      listed: listed.configs.map((c) => c.id),
      refused,
    };
  },
};

async function collect(stream) {
  const events = [];
  for await (const event of stream) events.push(event);
  events.taskId = events[0]?.payload.value.id;
  return events;
}

// Each scenario's answer is its result.
await play(Object.fromEntries(Object.entries(scenarios).map(([name, run]) => [name, async () => say({ result: await run() })])));
