// @ag-ui/client's agent machinery, through the TokentailAgent the gateway serves at
// /static/tokentail-ag-ui.js, against a tokentail gateway. Driven by test_ag_ui.py:
//
//   node ag_ui.mjs <scenario> <json options>     options: {gateway, threadId, token?, input}
//
// Prints JSON lines: {"step": ...} as the scenario goes (the test may act on them: kill a worker),
// then {"result": {events, messages, error}}. Every event is checked against @ag-ui/core's schema.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AgentCapabilitiesSchema, EventSchemas } from "@ag-ui/core/schemas";
import { cuttableFetch, play, say, untilAnswered } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const headers = options.token ? { Authorization: `Bearer ${options.token}` } : {};

// The file exactly as the gateway serves it (read where it serves it from, options.agentFile, while
// the gateway is down), put where "@ag-ui/client" resolves to this folder's node_modules (a browser
// app maps the name with its bundler or an import map).
async function servedAgentClass() {
  let text;
  if (options.agentFile) {
    text = await readFile(options.agentFile, "utf8");
  } else {
    const response = await fetch(`${options.gateway}/static/tokentail-ag-ui.js`);
    if (!response.ok) throw new Error(`GET /static/tokentail-ag-ui.js: ${response.status}`);
    text = await response.text();
  }
  const path = join(dirname(fileURLToPath(import.meta.url)), "node_modules", ".served", "tokentail-ag-ui.js");
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
  return (await import(pathToFileURL(path).href)).TokentailAgent;
}

const TokentailAgent = await servedAgentClass();

// What @ag-ui/client warns about (a producer declaring a protocol newer than the client's, material it
// strips), noted per scenario.
const warnings = [];
const warn = console.warn;
console.warn = (...args) => {
  warnings.push(args.map(String).join(" "));
  warn(...args);
};

// An AG-UI 1.1 client: it declares 1.1 on its input (@ag-ui/client 1.0.0 declares 1.0).
function newerAgentClass() {
  return class extends TokentailAgent {
    prepareRunAgentInput(parameters) {
      return { ...super.prepareRunAgentInput(parameters), protocolVersion: "1.1" };
    }
  };
}

function makeAgent({ fetch: fetchFn, withInput = true, AgentClass = TokentailAgent } = {}) {
  const agent = new AgentClass({
    url: `${options.gateway}/v1/ag-ui`,
    threadId: options.threadId,
    headers,
    ...(fetchFn ? { fetch: fetchFn } : {}),
    initialMessages: withInput ? [{ id: `user-${Date.now()}`, role: "user", content: options.input ?? "hello" }] : [],
  });
  const seen = { events: [], invalid: [], text: 0 };
  agent.subscribe({
    onEvent({ event }) {
      const checked = EventSchemas.safeParse(event);
      if (!checked.success) seen.invalid.push({ event, issues: checked.error.issues });
      seen.events.push(event);
      if (event.type === "TEXT_MESSAGE_CONTENT") seen.text += 1;
      seen.onEvent?.(event);
    },
  });
  return { agent, seen };
}

async function attempt(promise) {
  try {
    return { value: await promise, error: null };
  } catch (error) {
    return { value: null, error: String(error?.message ?? error) };
  }
}

function finish(agent, seen, extra = {}) {
  say({
    result: {
      events: seen.events,
      invalid: seen.invalid,
      messages: agent.messages,
      lastEventId: agent.lastEventId,
      warnings,
      ...extra,
    },
  });
}

// The interrupts a run finished with, answered as a page's approve buttons would: runAgent with `resume`,
// an entry each (options.denied: the messages of those to deny).
async function answerInterrupt(agent, seen) {
  const finished = seen.events.findLast((event) => event.type === "RUN_FINISHED");
  say({ step: "interrupted", outcome: finished.outcome });
  const resume = finished.outcome.interrupts.map((interrupt) => ({
    interruptId: interrupt.id,
    status: "resolved",
    payload: { approved: options.denied?.includes(interrupt.message) ? false : (options.approved ?? true) },
  }));
  return attempt(agent.runAgent({ resume }));
}

const scenarios = {
  // The run asks before a tool call: RUN_FINISHED with an interrupt; resume answers it and the run goes on.
  async approval() {
    const { agent, seen } = makeAgent();
    const first = await attempt(agent.runAgent());
    const { error } = await answerInterrupt(agent, seen);
    finish(agent, seen, { error, firstError: first.error });
  },

  // Another page connects while the run waits: it is shown the interrupt, and answers it.
  async approvalElsewhere() {
    const { agent, seen } = makeAgent({ withInput: false });
    const connected = await attempt(agent.connectAgent());
    const { error } = await answerInterrupt(agent, seen);
    finish(agent, seen, { error, firstError: connected.error });
  },

  // The run is interrupted by a question answered on another device (REST, options.sessionId's run);
  // the page, reloaded, reattaches with connectAgent(). (The agent that holds the interrupt refuses
  // to connect: "pending interrupt(s) not addressed by resume".)
  async answeredElsewhere() {
    const asking = makeAgent();
    const first = await attempt(asking.agent.runAgent());
    say({ step: "asked", outcome: asking.seen.events.findLast((event) => event.type === "RUN_FINISHED").outcome });
    await untilAnswered(options.gateway, options.sessionId, headers);
    const { agent, seen } = makeAgent({ withInput: false });
    const { error } = await attempt(agent.connectAgent());
    finish(agent, seen, { error, firstError: first.error });
  },

  // A thread that branches (the arithmetic agent), as a page would make it: the last answer asked
  // again (the messages up to its question), then the second question edited; then a page that
  // loads the thread (connectAgent: the thread so far, with the last run replayed).
  async branch() {
    const { agent, seen } = makeAgent({ withInput: false });
    const answer = () => agent.messages.findLast((message) => message.role === "assistant")?.content;
    const ask = async (content, id = `user-${content.length}-${Date.now()}`) => {
      agent.addMessage({ id, role: "user", content });
      const { error } = await attempt(agent.runAgent());
      if (error) throw new Error(error);
      return answer();
    };
    say({ step: "first", answer: await ask("What is 2 + 3?") });
    say({ step: "asked", answer: await ask("and times ten?") });
    const second = agent.messages.findLastIndex((message) => message.role === "user");
    const question = agent.messages[second];
    agent.setMessages(agent.messages.slice(0, second));
    say({ step: "regenerated", answer: await ask(question.content, question.id) });
    agent.setMessages(agent.messages.slice(0, second));
    say({ step: "edited", answer: await ask("and times two?", question.id), messages: agent.messages });
    const loaded = makeAgent({ withInput: false });
    const { error } = await attempt(loaded.agent.connectAgent());
    say({ step: "reloaded", messages: loaded.agent.messages, error });
    finish(agent, seen);
  },

  // The capabilities document, as HttpAgent.getCapabilities() fetches it ({url}/capabilities; not
  // implemented by @ag-ui/client 1.0.0's HttpAgent itself), checked against @ag-ui/core's schema.
  async capabilities() {
    const response = await fetch(`${options.gateway}/v1/ag-ui/capabilities`, { headers });
    const document = await response.json();
    const checked = AgentCapabilitiesSchema.safeParse(document);
    say({ result: { status: response.status, document, issues: checked.success ? [] : checked.error.issues } });
  },

  // runAgent to the end, by an AG-UI 1.1 client.
  async runNewer() {
    const { agent, seen } = makeAgent({ AgentClass: newerAgentClass() });
    const { error } = await attempt(agent.runAgent());
    finish(agent, seen, { error });
  },

  // runAgent to the end.
  async run() {
    const { agent, seen } = makeAgent();
    const { value, error } = await attempt(agent.runAgent());
    finish(agent, seen, { error, newMessages: value?.newMessages ?? null });
  },

  // The network drops mid-answer, twice: the agent resumes the stream by itself after its last id.
  async drop() {
    const cuttable = cuttableFetch();
    const { agent, seen } = makeAgent({ fetch: cuttable.fetch });
    seen.onEvent = (event) => {
      if (event.type === "TEXT_MESSAGE_CONTENT" && (seen.text === 2 || seen.text === 5)) {
        // The cut comes once this event is handled; events already read with it may be handled
        // first, so the last id is noted as the connection drops, not now.
        setTimeout(() => {
          say({ step: "cut", lastEventId: agent.lastEventId });
          cuttable.cutAll();
        }, 0);
      }
    };
    const { error } = await attempt(agent.runAgent());
    finish(agent, seen, { error, requests: cuttable.requests });
  },

  // A page that loads mid-answer (another device, a reload): a new agent, knowing nothing, connects.
  async connect() {
    const { agent, seen } = makeAgent({ withInput: false });
    const { error } = await attempt(agent.connectAgent());
    finish(agent, seen, { error });
  },

  // The test kills the worker after "text" (the first text of the message options.crashInMessage,
  // 1 by default); the agent keeps reading the same run.
  async crash() {
    const { agent, seen } = makeAgent();
    let messages = 0;
    let told = false;
    seen.onEvent = (event) => {
      if (event.type === "TEXT_MESSAGE_START") messages += 1;
      if (event.type === "TEXT_MESSAGE_CONTENT" && !told && messages === (options.crashInMessage ?? 1)) {
        told = true;
        say({ step: "text" });
      }
    };
    const { error } = await attempt(agent.runAgent());
    finish(agent, seen, { error });
  },

  // The gateway is down as the agent makes its first request (options.via: "run", runAgent's POST; or
  // "connect", connectAgent's GET of a run going). The test starts it again once it sees a request
  // fail ("refused"); the agent, sending it again as it reconnects, gets the run whole.
  async refused() {
    let refusals = 0;
    const noting = async (url, init) => {
      try {
        return await fetch(url, init);
      } catch (error) {
        refusals += 1;
        if (refusals === 1) say({ step: "refused", error: String(error?.cause?.code ?? error) });
        throw error;
      }
    };
    const { agent, seen } = makeAgent({ fetch: noting, withInput: options.via === "run" });
    agent.maxReconnects = options.maxReconnects ?? agent.maxReconnects;
    const { error } = await attempt(options.via === "run" ? agent.runAgent() : agent.connectAgent());
    finish(agent, seen, { error, refusals });
  },

  // The stop button: abortRun() cancels the run in tokentail, then hangs up.
  async stop() {
    const { agent, seen } = makeAgent();
    let stopping;
    seen.onEvent = (event) => {
      if (event.type === "TEXT_MESSAGE_CONTENT" && !stopping) stopping = agent.abortRun();
    };
    const { error } = await attempt(agent.runAgent());
    const stopped = await stopping;
    say({ step: "stopped", http: stopped.status, body: await stopped.json(), named: agent.shownRunId });
    finish(agent, seen, { error });
  },
};

await play(scenarios);
