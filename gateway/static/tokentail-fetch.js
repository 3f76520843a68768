// retryingFetch: a fetch that sends a request again when the network fails it (a gateway not up yet,
// or restarting), for clients whose own retries start only once a stream has given them an id:
// TanStack AI's `fetchServerSentEvents` sends its first request once, and fails the message when it
// cannot connect. A dependency-free ES module, served at /static/tokentail-fetch.js.
//
//   import { ChatClient, fetchServerSentEvents } from "@tanstack/ai-client";
//   import { retryingFetch } from "./tokentail-fetch.js";
//   const client = new ChatClient({
//     connection: fetchServerSentEvents(`${TT}/v1/ag-ui`, { headers, fetchClient: retryingFetch() }),
//     threadId: chatId,
//   });
//
// It waits as TokentailAgent's reconnects do: `delayMs` (250), doubling up to 5 s, `retries` times
// (8: about 23 s), then the last failure is the caller's. Only a request that got no answer is sent
// again: an HTTP error is an answer, returned as it is, and an aborted request is not retried.
// Sending a tokentail AG-UI request again is safe: the same POST (its runId and last message) makes
// one run, and a reconnect or a join writes nothing. The request's body must be one fetch can send
// twice (a string, as TanStack AI's is).

export function retryingFetch({ retries = 8, delayMs = 250, fetch: send = (input, init) => fetch(input, init) } = {}) {
  return async function fetchAgain(input, init = {}) {
    const signal = init.signal ?? null;
    for (let failures = 0; ; failures += 1) {
      try {
        return await send(input, init);
      } catch (error) {
        if (signal?.aborted || error?.name === "AbortError" || failures >= retries) throw error;
        await pause(Math.min(delayMs * 2 ** failures, 5000), signal);
      }
    }
  };
}

// Resolves after `ms`, or at once when `signal` aborts (the next try then fails as aborted).
function pause(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
