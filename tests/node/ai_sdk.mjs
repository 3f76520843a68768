// The Vercel AI SDK's own chat (AbstractChat, the class useChat wraps) and transports, headless,
// against a tokentail gateway. Driven by test_ai_sdk.py:
//
//   node ai_sdk.mjs <scenario> <json options>     options: {gateway, chatId, token?, input}
//
// Prints JSON lines: {"step": ...} as the scenario goes (the test may act on them: kill a worker),
// then {"result": {status, error, messages}}.
import {
  AbstractChat,
  DefaultChatTransport,
  WebSocketChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
} from "ai";
import { cuttableFetch, play, say, untilAnswered } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const headers = options.token ? { Authorization: `Bearer ${options.token}` } : {};

// The smallest ChatState: what a UI framework's reactive store would hold.
class State {
  status = "ready";
  error = undefined;
  messages = [];
  constructor(messages = []) {
    this.messages = messages;
  }
  pushMessage = (message) => this.messages.push(message);
  popMessage = () => this.messages.pop();
  replaceMessage = (index, message) => (this.messages[index] = message);
  snapshot = (thing) => structuredClone(thing);
}

function makeChat({ transport, messages = [], onText }) {
  const state = new State(messages);
  const chat = new AbstractChat({
    id: options.chatId,
    transport,
    state,
    onError: () => {},
    // As the SDK's docs set it up for tool approvals: an answered approval sends the chat again.
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  if (onText) {
    const replace = state.replaceMessage;
    state.replaceMessage = (index, message) => {
      replace(index, message);
      if (message.role === "assistant" && textOf(message)) onText(textOf(message));
    };
  }
  return { chat, state };
}

function textOf(message) {
  return message.parts.filter((part) => part.type === "text").map((part) => part.text).join("");
}

function httpTransport(fetchFn) {
  return new DefaultChatTransport({ api: `${options.gateway}/v1/ai-sdk/chat`, headers, fetch: fetchFn });
}

function userMessage() {
  return { text: options.input ?? "hello" };
}

async function until(check, what, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function finish(chat, state) {
  say({ result: { status: chat.status, error: state.error?.message ?? null, messages: state.messages } });
}

function awaitingApproval(state) {
  return state.messages.at(-1)?.parts.find((part) => part.state === "approval-requested");
}

// The page approves (or denies) what the agent asks, as a button calling addToolApprovalResponse would.
async function approve(chat, state, approved) {
  await until(() => chat.status === "ready" && awaitingApproval(state), "the approval request");
  const asked = structuredClone(awaitingApproval(state));
  say({ step: "asked", part: asked, status: chat.status });
  await chat.addToolApprovalResponse({ id: asked.approval.id, approved });
  await until(() => chat.status === "ready" && !awaitingApproval(state) && state.messages.at(-1).metadata, "the end");
}

const scenarios = {
  // The agent asks before a tool call; the chat approves it and the run goes on (HTTP or socket).
  async approval() {
    const transport = options.socket
      ? new WebSocketChatTransport({ url: `${options.gateway}/v1/ai-sdk/chat/ws`, params: { token: options.token } })
      : httpTransport();
    const { chat, state } = makeChat({ transport });
    await chat.sendMessage(userMessage());
    await approve(chat, state, options.approved ?? true);
    finish(chat, state);
    transport.close?.();
  },

  // Two tool calls wait for approval at once: the page answers the second first; the SDK sends the
  // chat once both have a response (lastAssistantMessageIsCompleteWithApprovalResponses).
  async approvals() {
    const { chat, state } = makeChat({ transport: httpTransport() });
    await chat.sendMessage(userMessage());
    const requested = () => state.messages.at(-1)?.parts.filter((part) => part.state === "approval-requested") ?? [];
    await until(() => chat.status === "ready" && requested().length === 2, "two approval requests");
    const asked = structuredClone(requested());
    say({ step: "asked", parts: asked });
    for (const part of [...asked].reverse()) {
      await chat.addToolApprovalResponse({ id: part.approval.id, approved: part.input.what === "logs" });
    }
    await until(() => chat.status === "ready" && !requested().length && state.messages.at(-1).metadata, "the end");
    finish(chat, state);
  },

  // The page is reloaded while the run waits: the new page gets the question again and answers it.
  async approvalAfterReload() {
    const first = makeChat({ transport: httpTransport() });
    await first.chat.sendMessage(userMessage());
    await until(() => awaitingApproval(first.state), "the approval request");
    say({ step: "reloaded" });
    const response = await fetch(`${options.gateway}/v1/ai-sdk/chat/${options.chatId}/messages`, { headers });
    const { chat, state } = makeChat({ transport: httpTransport(), messages: await response.json() });
    await chat.resumeStream();
    await approve(chat, state, true);
    finish(chat, state);
  },

  // The agent asks; the question is answered on another device (REST, options.sessionId's run), and
  // this page, learning of it, resumes the stream (resumeStream: the run replayed from its start).
  async answeredElsewhere() {
    const { chat, state } = makeChat({ transport: httpTransport() });
    await chat.sendMessage(userMessage());
    await until(() => chat.status === "ready" && awaitingApproval(state), "the approval request");
    say({ step: "asked", approvalId: awaitingApproval(state).approval.id });
    await untilAnswered(options.gateway, options.sessionId, headers);
    await chat.resumeStream();
    finish(chat, state);
  },

  // A conversation that branches (the arithmetic agent: "What is 2 + 3?" 5, "and times ten?" 50):
  // regenerate() the second answer, then edit the second question, as the page's buttons would;
  // then a reload, as the page's start loads the chat (GET …/messages).
  async branch() {
    const { chat, state } = makeChat({ transport: httpTransport() });
    const answer = () => textOf(state.messages.at(-1));
    await chat.sendMessage({ text: "What is 2 + 3?" });
    await chat.sendMessage({ text: "and times ten?" });
    say({ step: "asked", answer: answer() });
    await chat.regenerate();
    say({ step: "regenerated", answer: answer(), messages: state.messages.length });
    await chat.sendMessage({ text: "and times two?", messageId: state.messages[2].id });
    say({ step: "edited", answer: answer(), messages: structuredClone(state.messages) });
    const response = await fetch(`${options.gateway}/v1/ai-sdk/chat/${options.chatId}/messages`, { headers });
    say({ step: "reloaded", messages: await response.json() });
    finish(chat, state);
  },

  // Send and read to the end.
  async send() {
    const { chat, state } = makeChat({ transport: httpTransport() });
    await chat.sendMessage(userMessage());
    finish(chat, state);
  },

  // The network drops mid-answer; the transport's reconnect path (GET …/{id}/stream) resumes.
  async drop() {
    const cuttable = cuttableFetch();
    let cut = false;
    const { chat, state } = makeChat({
      transport: httpTransport(cuttable.fetch),
      onText: () => {
        if (!cut) {
          cut = true;
          say({ step: "text" });
          cuttable.cutAll();
        }
      },
    });
    await chat.sendMessage(userMessage());
    say({ step: "dropped", status: chat.status, text: textOf(state.messages.at(-1) ?? { parts: [] }) });
    chat.clearError();
    await chat.resumeStream();
    finish(chat, state);
  },

  // A page reload mid-answer: a new chat starts from GET …/messages, then resumes, as useChat({resume: true}).
  async reload() {
    const first = makeChat({ transport: httpTransport(), onText: () => (first.seen = true) });
    const sending = first.chat.sendMessage(userMessage());
    await until(() => first.seen, "the first text");
    first.chat.stop(); // the old page goes away (closing a connection never cancels a run)
    await sending;
    say({ step: "reloaded" });
    const response = await fetch(`${options.gateway}/v1/ai-sdk/chat/${options.chatId}/messages`, { headers });
    const { chat, state } = makeChat({ transport: httpTransport(), messages: await response.json() });
    say({ step: "messages", messages: structuredClone(state.messages) });
    await chat.resumeStream();
    finish(chat, state);
  },

  // The test kills the worker after "text" (once the answer has options.crashAfterChars characters,
  // 1 by default); this chat keeps reading the same response.
  async crash() {
    let told = false;
    const { chat, state } = makeChat({
      transport: httpTransport(),
      onText: (text) => {
        if (!told && text.length >= (options.crashAfterChars ?? 1)) {
          told = true;
          say({ step: "text" });
        }
      },
    });
    await chat.sendMessage(userMessage());
    finish(chat, state);
  },

  // The stop button: the SDK's stop() hangs up; the app's stop endpoint cancels the run it shows
  // (the assistant message's id is its run's).
  async stop() {
    const { chat, state } = makeChat({ transport: httpTransport(), onText: () => (state.seen = true) });
    const sending = chat.sendMessage(userMessage());
    await until(() => state.seen, "the first text");
    const shown = state.messages.at(-1).id;
    await chat.stop();
    const stopped = await fetch(`${options.gateway}/v1/ai-sdk/chat/${options.chatId}/stop`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify({ run_id: shown }),
    });
    await sending;
    say({ step: "stopped", http: stopped.status, body: await stopped.json() });
    finish(chat, state);
  },

  // WebSocketChatTransport: send, lose the socket mid-answer, resume on a new one.
  async websocket() {
    const url = `${options.gateway}/v1/ai-sdk/chat/ws`;
    const params = options.token ? { token: options.token } : undefined;
    const transport = new WebSocketChatTransport({ url, params });
    const { chat, state } = makeChat({ transport, onText: () => (state.seen = true) });
    const sending = chat.sendMessage(userMessage());
    await until(() => state.seen, "the first text");
    await chat.stop(); // sends `abort`: the socket stops this request's chunks
    await sending;
    say({ step: "stopped", text: textOf(state.messages.at(-1)) });
    await chat.resumeStream(); // a replay from the start, numbered the same
    finish(chat, state);
    transport.close?.();
  },
};

await play(scenarios);
