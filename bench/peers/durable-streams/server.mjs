// The Durable Streams reference server and a producer, for tokentail's side-by-side benchmark.
//
//   node server.mjs gateway <port>    the server itself, file-backed (LMDB + append-only logs in
//                                     DATA_DIR): GET /v1/stream/<id>?offset=-1&live=sse follows a stream
//   node server.mjs producer <port>   POST /start?id=&tokens=&rate=  creates a stream and writes it
//                                     (the "worker"), over HTTP to the server at GATEWAY_URL
//
// The producer writes as tokentail's worker does: the first token at once, then the tokens due every
// 50 ms joined into one append, one append in flight at a time. Appends are idempotent: each carries
// Producer-Id/Epoch/Seq, the protocol's fenced, deduplicated path. A JSON stream: each append is one
// message, `{t, text}`, `t` the producer's clock before the append (ms since the epoch) so the load
// generator can time delivery. The last request closes the stream (Stream-Closed, no body), so the
// server ends every reader's SSE response with a `streamClosed` control event. `burst` makes a backlog:
// one token per append, as fast as they are acknowledged.
import http from "node:http";
import { DurableStreamTestServer } from "@durable-streams/server";

const [role, port] = [process.argv[2], Number(process.argv[3])];
const FLUSH_MS = 50;
const agent = new http.Agent({ keepAlive: true });

function send(id, seq, body, close) {
  const headers = { "producer-id": "bench", "producer-epoch": "0", "producer-seq": String(seq) };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (close) headers["stream-closed"] = "true";
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${process.env.GATEWAY_URL}/v1/stream/${id}`,
      { method: "POST", agent, headers },
      (response) => {
        response.resume();
        response.on("end", () =>
          response.statusCode === 200 || response.statusCode === 204
            ? resolve()
            : reject(new Error(`append to ${id}: ${response.statusCode}`)),
        );
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

function create(id) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${process.env.GATEWAY_URL}/v1/stream/${id}`,
      { method: "PUT", agent, headers: { "content-type": "application/json" } },
      (response) => {
        response.resume();
        response.on("end", () =>
          response.statusCode === 201 ? resolve() : reject(new Error(`create ${id}: ${response.statusCode}`)),
        );
      },
    );
    request.on("error", reject);
    request.end();
  });
}

const stamp = (text) => JSON.stringify({ t: performance.timeOrigin + performance.now(), text });
// Each token is the time it was due (ms since the epoch), as every producer of the benchmark writes it:
// the load generator times delivery from it (bench/systems.py, CLOCK).
const dueStamp = (started, i, rate) => `${(performance.timeOrigin + started + (rate ? (i * 1000) / rate : 0)).toFixed(1)} `;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function produce(id, tokens, rate, burst) {
  let seq = 0;
  if (burst) {
    for (; seq < tokens; seq++) await send(id, seq, stamp("token "));
  } else {
    const started = performance.now();
    for (let sent = 0; sent < tokens; ) {
      const due = Math.min(tokens, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      if (due > sent) {
        const text = Array.from({ length: due - sent }, (_, i) => dueStamp(started, sent + i, rate)).join("");
        await send(id, seq++, stamp(text));
        sent = due;
      }
      if (sent < tokens) await sleep(FLUSH_MS);
    }
  }
  await send(id, seq, undefined, true);
}

async function start(request, response) {
  const url = new URL(request.url, "http://bench");
  const id = url.searchParams.get("id");
  await create(id);
  response.writeHead(200).end();
  const [tokens, rate] = [Number(url.searchParams.get("tokens")), Number(url.searchParams.get("rate"))];
  produce(id, tokens, rate, url.searchParams.has("burst")).catch((error) => console.error(error));
}

if (role === "gateway") {
  const server = new DurableStreamTestServer({ port, host: "127.0.0.1", dataDir: process.env.DATA_DIR });
  await server.start();
  console.log(`gateway listening on ${port}, data in ${process.env.DATA_DIR}`);
} else {
  http
    .createServer((request, response) => {
      start(request, response).catch((error) => {
        console.error(error);
        if (!response.headersSent) response.writeHead(500);
        response.end();
      });
    })
    .listen(port, "127.0.0.1", () => console.log(`producer listening on ${port}`));
}
