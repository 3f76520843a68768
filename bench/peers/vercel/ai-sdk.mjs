// The AI SDK's resumable chat pipeline as a producer and a gateway, for tokentail's side-by-side benchmark:
// what an application built as the SDK's docs show runs ("Chatbot Resume Streams", ai 7.0.173).
//
//   node ai-sdk.mjs producer <port>   POST /start?id=&tokens=&rate=  starts a stream (the chat route's POST)
//   node ai-sdk.mjs gateway <port>    GET /stream/<id>                follows it as SSE (the resume route's GET)
//
// The producer runs `streamText` over a mock model, turns its stream into the UI message stream
// (`toUIMessageStream`) and answers with `createUIMessageStreamResponse`, whose `consumeSseStream`
// hands a copy of the SSE to `createNewResumableStream`, as the docs' POST handler does; it answers
// 200 once that stream is created, then drains the Response's body (that route's own client). The
// gateway serves other clients with `resumeExistingStream` and the SDK's UI_MESSAGE_STREAM_HEADERS,
// as the docs' GET handler does. Nothing is coalesced: each model chunk is one SSE event, as in the
// product. The model speaks token i at its due time (the first at once, each timed from the start so
// that timer drift does not add up), and each token is that due time (ms since the epoch), as every
// producer of the benchmark writes it: the load generator times delivery from it (bench/systems.py,
// CLOCK). REDIS_URL names the Redis, as the package expects.
import {
  convertToModelMessages,
  createUIMessageStreamResponse,
  generateId,
  streamText,
  toUIMessageStream,
  UI_MESSAGE_STREAM_HEADERS,
} from "ai";
import { MockLanguageModelV4 } from "ai/test";
import { createResumableStreamContext } from "resumable-stream";
import { follower, serve } from "./serve.mjs";

const [role, port] = [process.argv[2], Number(process.argv[3])];
const context = createResumableStreamContext({ waitUntil: null, keyPrefix: "bench-ai" });

const dueStamp = (started, i, rate) => `${(performance.timeOrigin + started + (rate ? (i * 1000) / rate : 0)).toFixed(1)} `;

// A model's stream: `tokens` text-delta chunks, token i at `started + i * 1000 / rate` ms (rate 0: all
// at once), then the finish chunk with usage. One timer per stream at a time, each set from the start.
function modelStream(tokens, rate) {
  const started = performance.now();
  return new ReadableStream({
    start(controller) {
      controller.enqueue({ type: "stream-start", warnings: [] });
      controller.enqueue({ type: "text-start", id: "0" });
      let i = 0;
      const speak = () => {
        for (; i < tokens; i++) {
          const wait = started + (rate ? (i * 1000) / rate : 0) - performance.now();
          if (wait > 0) {
            setTimeout(speak, wait);
            return;
          }
          controller.enqueue({ type: "text-delta", id: "0", delta: dueStamp(started, i, rate) });
        }
        controller.enqueue({ type: "text-end", id: "0" });
        controller.enqueue({
          type: "finish",
          finishReason: { unified: "stop", raw: "stop" },
          usage: {
            inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
            outputTokens: { total: tokens, text: tokens, reasoning: 0 },
          },
        });
        controller.close();
      };
      speak();
    },
  });
}

async function produce(request, response) {
  const url = new URL(request.url, "http://bench");
  const id = url.searchParams.get("id");
  const [tokens, rate] = [Number(url.searchParams.get("tokens")), Number(url.searchParams.get("rate"))];
  const model = new MockLanguageModelV4({ doStream: async () => ({ stream: modelStream(tokens, rate) }) });
  // The docs' handler, less its chat store: the messages are the user's one, and `onEnd` (where the
  // docs save the chat and clear its active stream) saves nothing; the SDK still builds the message for it.
  const messages = [{ id: `user-${id}`, role: "user", parts: [{ type: "text", text: "benchmark" }] }];
  const result = streamText({ model, messages: await convertToModelMessages(messages) });
  let created;
  const answer = createUIMessageStreamResponse({
    stream: toUIMessageStream({
      stream: result.stream,
      originalMessages: messages,
      generateMessageId: generateId,
      onEnd: () => {},
    }),
    consumeSseStream: ({ stream }) => {
      created = context.createNewResumableStream(id, () => stream);
      return created;
    },
  });
  await created; // called at once by createUIMessageStreamResponse, which does not wait for it
  response.writeHead(200).end();
  for await (const _ of answer.body) {
    // the starting route's own client, here a drain
  }
}

const follow = follower(context, UI_MESSAGE_STREAM_HEADERS);
serve(role, port, role === "producer" ? produce : follow);
