// Vercel's `resumable-stream` as a producer and a gateway, for tokentail's side-by-side benchmark.
//
//   node server.mjs producer <port>   POST /start?id=&tokens=&rate=  starts a stream (the "worker")
//   node server.mjs gateway <port>    GET /stream/<id>[?skip=<chars>]  follows it as SSE (any replica)
//
// The producer runs `createNewResumableStream`, as the route that starts a generation would, and
// drains what it returns (that route's own client). The gateway serves other clients with
// `resumeExistingStream`: the package's path for a refresh or another replica, through Redis pub/sub.
// Each chunk is one SSE frame, written like tokentail's worker writes: the first token at once, then
// the tokens due every 50 ms joined. Each token is its due time, and frames carry the producer's
// clock as it built them (`t`, ms since the epoch), so the load generator can time delivery from either. REDIS_URL names the Redis, as the package expects.
import { createResumableStreamContext } from "resumable-stream";
import { follower, serve } from "./serve.mjs";

const [role, port] = [process.argv[2], Number(process.argv[3])];
const context = createResumableStreamContext({ waitUntil: null, keyPrefix: "bench" });
const FLUSH_MS = 50;

// Each token is the time it was due (ms since the epoch), as every producer of the benchmark writes it:
// the load generator times delivery from it (bench/systems.py, CLOCK).
const dueStamp = (started, i, rate) => `${(performance.timeOrigin + started + (rate ? (i * 1000) / rate : 0)).toFixed(1)} `;

function tokenStream(tokens, rate, burst) {
  const started = performance.now();
  let sent = 0;
  let seq = 0;
  let timer;
  return new ReadableStream({
    start(controller) {
      if (burst) {
        // A backlog: one token per frame, all at once, then held open (a finished stream cannot be resumed).
        for (seq = 1; seq <= tokens; seq++) {
          const data = JSON.stringify({ t: performance.timeOrigin + performance.now(), text: "token " });
          controller.enqueue(`id: ${seq}\nevent: message.delta\ndata: ${data}\n\n`);
        }
        setTimeout(() => controller.close(), 120_000);
        return;
      }
      const flush = () => {
        const due = Math.min(tokens, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
        if (due > sent) {
          const text = Array.from({ length: due - sent }, (_, i) => dueStamp(started, sent + i, rate)).join("");
          const data = JSON.stringify({ t: performance.timeOrigin + performance.now(), text });
          controller.enqueue(`id: ${++seq}\nevent: message.delta\ndata: ${data}\n\n`);
          sent = due;
        }
        if (sent >= tokens) {
          controller.enqueue(`id: ${++seq}\nevent: done\ndata: {}\n\n`);
          controller.close();
          clearInterval(timer);
        }
      };
      flush();
      timer = setInterval(flush, FLUSH_MS);
    },
  });
}

async function produce(request, response) {
  const url = new URL(request.url, "http://bench");
  const id = url.searchParams.get("id");
  const stream = await context.createNewResumableStream(id, () =>
    tokenStream(
      Number(url.searchParams.get("tokens")),
      Number(url.searchParams.get("rate")),
      url.searchParams.has("burst"),
    ),
  );
  response.writeHead(200).end();
  for await (const _ of stream) {
    // the starting route's own client, here a drain
  }
}

const follow = follower(context, { "content-type": "text/event-stream", "cache-control": "no-cache" });
serve(role, port, role === "producer" ? produce : follow);
