// The useChat snippet of docs/ui-protocols.md, as a page on an origin of its own would use it:
// the chat's earlier messages loaded first, then useChat sending to and resuming from the gateway.
// tests/browser/test_use_chat_page.py bundles it with esbuild and opens it in Chromium.
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, type UIMessage } from "ai";
import { useState } from "react";
import { createRoot } from "react-dom/client";

const query = new URLSearchParams(location.search);
const TT = query.get("gateway") ?? "http://127.0.0.1:8000"; // tokentail: another origin than this page's
const chatId = query.get("chat") ?? crypto.randomUUID();
const chatToken = query.get("token"); // from your backend when auth is on (docs: "Chat ids and browser credentials")
const auth = (): Record<string, string> => (chatToken ? { Authorization: `Bearer ${chatToken}` } : {});

function Chat({ initialMessages }: { initialMessages: UIMessage[] }) {
  const { messages, sendMessage, status, error } = useChat({
    id: chatId,
    messages: initialMessages,
    resume: true,
    transport: new DefaultChatTransport({
      api: `${TT}/v1/ai-sdk/chat`,
      headers: auth, // it sends the whole message list: regenerate() and edits branch
    }),
  });
  const [input, setInput] = useState("");
  return (
    <main>
      {messages.map((message) => (
        <p key={message.id} className={message.role}>
          {message.parts.map((part) => (part.type === "text" ? part.text : "")).join("")}
        </p>
      ))}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          sendMessage({ text: input });
          setInput("");
        }}
      >
        <input id="input" value={input} onChange={(event) => setInput(event.target.value)} />
        <button id="send" disabled={status === "submitted" || status === "streaming"}>
          Send
        </button>
      </form>
      <output id="status">{error ? `error: ${error.message}` : status}</output>
    </main>
  );
}

// After a reload: the chat so far, then useChat reconnects to an answer still being written.
const initialMessages: UIMessage[] = await fetch(`${TT}/v1/ai-sdk/chat/${encodeURIComponent(chatId)}/messages`, {
  headers: auth(),
})
  .then((response) => (response.ok ? response.json() : []))
  .catch(() => []); // unreachable, or refused: the chat starts empty and says why when it sends
createRoot(document.getElementById("root")!).render(<Chat initialMessages={initialMessages} />);
