// LangGraph's React hook, useStream (@langchain/langgraph-sdk/react), as a page on an origin of its own
// uses it against tokentail's LangGraph routes (docs/langgraph.md): the app's backend made the chat and
// handed the page its id and a chat token; the hook sends, streams, reattaches after a reload
// (reconnectOnMount), stops, and answers an interrupt. tests/node/test_langgraph_use_stream.py bundles it
// twice with esbuild, as it is (the release users install) and with
// `--alias:@langchain/langgraph-sdk=langgraph-sdk-2` (2.0.0), and drives it in Chromium.
import type { Message } from "@langchain/langgraph-sdk";
import { useStream } from "@langchain/langgraph-sdk/react";
import { Fragment, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

const query = new URLSearchParams(location.search);
const TT = query.get("gateway") ?? "http://127.0.0.1:8000"; // tokentail: another origin than this page's
const API = `${TT}/langgraph`;
const threadId = query.get("thread"); // the chat's id: a thread is a chat
const assistantId = query.get("assistant") ?? "assistant"; // a catalog agent's name is its graph id
const chatToken = query.get("token") ?? undefined;
// The token as LangGraph's docs pass a key (`apiKey`: the header x-api-key), or as a bearer.
const asApiKey = query.get("key") === "apiKey";
// `?history=1`: the hook reads the thread's history (fetchStateHistory) and the page offers an edit of each
// human message and a regenerate of each answer (submit from its parent checkpoint, with no input for a
// regenerate) and the branch switcher (getMessagesMetadata, setBranch).
const withHistory = query.get("history") === "1";
const HEADERS: Record<string, string> = chatToken && !asApiKey ? { Authorization: `Bearer ${chatToken}` } : {};

// Every request the hook makes, in order, and each length the answer is shown at: kept in sessionStorage
// (where the hook keeps its run's id) so that a reload adds to the list. The test reports the requests as
// useStream's calls, and reads from the lengths that no replay showed the answer twice, even for a moment.
const LOG = "tokentail:log";
type Logged =
  | { method: string; path: string; lastEventId?: string; body?: unknown; status?: number }
  | { shown: number };

function log<T>(change: (entries: Logged[]) => T): T {
  const entries: Logged[] = JSON.parse(sessionStorage.getItem(LOG) ?? "[]");
  const result = change(entries);
  sessionStorage.setItem(LOG, JSON.stringify(entries));
  return result;
}

async function loggedFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const url = new URL(input instanceof Request ? input.url : input.toString());
  const request = {
    method: init.method ?? "GET",
    path: url.pathname.slice(new URL(API).pathname.length) + url.search,
    lastEventId: new Headers(init.headers).get("Last-Event-ID") ?? undefined,
    body: typeof init.body === "string" ? JSON.parse(init.body) : undefined,
  };
  const index = log((entries) => entries.push(request) - 1);
  const response = await fetch(input, init);
  log((entries) => Object.assign(entries[index], { status: response.status }));
  return response;
}
const CALLER = { fetch: loggedFetch }; // one object: a new one at each render would make the hook a new client

type State = { messages: Message[] };

function text(content: Message["content"]): string {
  if (typeof content === "string") return content;
  return content.map((part) => ("text" in part && typeof part.text === "string" ? part.text : "")).join("");
}

function Chat() {
  const thread = useStream<State>({
    apiUrl: API,
    assistantId,
    threadId,
    reconnectOnMount: true, // the run's id in sessionStorage: a reload rejoins the answer being written
    apiKey: asApiKey ? chatToken : undefined,
    defaultHeaders: HEADERS,
    callerOptions: CALLER,
    ...(withHistory ? { fetchStateHistory: true } : {}),
  });
  const [input, setInput] = useState("");
  const [edit, setEdit] = useState("");
  const [answer, setAnswer] = useState('{"approved": true}');
  const answers = thread.messages.filter((message) => message.type === "ai");
  const shown = answers.map((message) => text(message.content)).join("").length;
  useEffect(() => void log((entries) => entries.push({ shown })), [shown]);
  return (
    <main>
      {thread.messages.map((message, index) => {
        const meta = withHistory ? thread.getMessagesMetadata(message, index) : undefined;
        const options = meta?.branchOptions ?? [];
        const at = meta?.branch != null ? options.indexOf(meta.branch) : -1;
        return (
          <Fragment key={message.id ?? index}>
            <p className={message.type} data-id={message.id}>
              {text(message.content)}
            </p>
            {withHistory && message.type === "human" && (
              <button
                className="edit"
                onClick={() =>
                  thread.submit(
                    { messages: [{ type: "human", content: edit }] },
                    { checkpoint: meta?.firstSeenState?.parent_checkpoint ?? null },
                  )
                }
              >
                Edit
              </button>
            )}
            {withHistory && message.type === "ai" && (
              <button
                className="regenerate"
                onClick={() => thread.submit(undefined, { checkpoint: meta?.firstSeenState?.parent_checkpoint ?? null })}
              >
                Regenerate
              </button>
            )}
            {options.length > 1 && (
              <span className="branches" data-of={message.type} data-at={at} data-count={options.length}>
                <button className="prev" disabled={at <= 0} onClick={() => thread.setBranch(options[at - 1])}>
                  &lt;
                </button>
                {at + 1}/{options.length}
                <button className="next" disabled={at >= options.length - 1} onClick={() => thread.setBranch(options[at + 1])}>
                  &gt;
                </button>
              </span>
            )}
          </Fragment>
        );
      })}
      <input id="edit" value={edit} onChange={(event) => setEdit(event.target.value)} />
      {thread.interrupts.map((interrupt, index) => (
        <pre key={interrupt.id ?? index} className="interrupt" data-id={interrupt.id}>
          {JSON.stringify(interrupt)}
        </pre>
      ))}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          thread.submit({ messages: [{ type: "human", content: input }] });
          setInput("");
        }}
      >
        <input id="input" value={input} onChange={(event) => setInput(event.target.value)} />
        <button id="send" disabled={thread.isLoading}>
          Send
        </button>
      </form>
      <button id="stop" onClick={() => thread.stop()}>
        Stop
      </button>
      <input id="answer" value={answer} onChange={(event) => setAnswer(event.target.value)} />
      <button id="resume" onClick={() => thread.submit(undefined, { command: { resume: JSON.parse(answer) } })}>
        Resume
      </button>
      <output id="status">
        {thread.error ? `error: ${String((thread.error as Error).message ?? thread.error)}` : thread.isLoading ? "loading" : "ready"}
      </output>
    </main>
  );
}

createRoot(document.getElementById("root")!).render(<Chat />);
