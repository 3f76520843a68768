// npm `openai`'s Responses API WebSocket mode (its socket and ResponsesWebSocketSession's lanes)
// against tokentail gateways, configured as docs/openai-responses.md says (baseURL, apiKey, model).
// Driven by test_openai_responses_ws.py:
//
//   node openai_responses_ws.mjs <scenario> <json options>   options: {gateways: [url, url], apiKey, input, params}
//
// Prints JSON lines: {"step": ...} as the scenario goes (the test may act on them: kill the worker,
// or the gateway), then {"result": {...}} with what the client saw.
import OpenAI from "openai";
import { ResponsesWS } from "openai/resources/responses/ws"; // on the `ws` package, as the SDK asks
import { ResponsesWebSocketSession } from "openai/lib/responses/responses-websocket-session";
import { play, say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const client = (gateway, apiKey = options.apiKey) =>
  new OpenAI({ baseURL: `${gateway}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
const LIMITS = { maxLanes: 8, maxBufferedEvents: 10_000, maxBufferedBytes: 1 << 26 };

async function connect(gateway, apiKey) {
  const connection = new ResponsesWS(client(gateway, apiKey));
  const events = [];
  connection.on("event", (event) => events.push(event)); // every event, as the lanes get them too
  connection.on("error", () => {}); // the lanes' (or the refusal's) to handle
  await new Promise((resolve, reject) => {
    connection.socket.once("open", resolve);
    connection.socket.once("close", (code) => reject(new Error(`closed: ${code}`)));
    connection.socket.once("error", reject);
  });
  return { connection, events, session: new ResponsesWebSocketSession(connection, LIMITS) };
}

const of = (events, streamId) => events.filter((e) => e.stream_id === streamId);

function summary(events) {
  const final = events.at(-1).response;
  return {
    types: events.map((e) => e.type),
    sequence: events.map((e) => e.sequence_number),
    status: final.status,
    text: events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join(""),
    outputText: final.output.filter((i) => i.type === "message").flatMap((i) => i.content.map((p) => p.text)).join(""),
  };
}

async function until(check, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const scenarios = {
  // Two lanes at once, a follow-up on one of them, an approval asked and answered on the socket; a wrong key.
  async lanes() {
    const { connection, events, session } = await connect(options.gateways[0]);
    const [a, b] = [session.lane("a"), session.lane("b")];
    a.create({ model: "scripted", input: options.input, params: { tokens: 20, tokens_per_second: 0 } });
    b.create({ model: "scripted", input: "the other lane", params: { tokens: 20, tokens_per_second: 0 } });
    const [one, two] = await Promise.all([a.finalResponse(), b.finalResponse()]);
    a.create({ model: "scripted", input: "and again", previous_response_id: one.id, params: { tokens: 5, tokens_per_second: 0 } });
    const next = await a.finalResponse();
    const tools = session.lane("tools");
    tools.create({ model: "careful", input: "What is 6 * 7?" });
    const asked = await tools.finalResponse();
    const request = asked.output.at(-1);
    tools.create({
      model: "careful",
      previous_response_id: asked.id,
      input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }],
    });
    const answered = await tools.finalResponse();
    // The same response read over HTTP, from the other gateway.
    const http = [];
    for await (const e of await client(options.gateways[1]).responses.retrieve(one.id, { stream: true })) http.push(e);
    session.close();
    connection.close();
    let refused = null; // a wrong key: the upgrade is refused, the socket never opens
    try {
      await connect(options.gateways[0], "not-a-key-0123456789");
    } catch (error) {
      refused = String(error?.message ?? error);
    }
    say({
      result: {
        refused,
        one: { ...summary(of(events, "a").slice(0, of(events, "a").findIndex((e) => e.type === "response.completed") + 1)), id: one.id, sdkText: one.output_text },
        two: { status: two.status, sdkText: two.output_text },
        next: { status: next.status, previous: next.previous_response_id },
        asked: { status: asked.status, type: request.type, name: request.name },
        answered: { status: answered.status, text: answered.output_text, previous: answered.previous_response_id },
        httpTypes: http.map((e) => e.type),
      },
    });
  },

  // A response on a socket cut mid-answer, after `cutAfter` deltas (10 by default; the socket drops:
  // `background` keeps the response, or the gateway that held it is killed: the test acts on the
  // "cut" step), read on from where it was with retrieve(stream, starting_after) on the other
  // gateway. `model`: the agent, `scripted` by default.
  async drop() {
    const { connection, events, session } = await connect(options.gateways[0]);
    const lane = session.lane("long");
    const body = { model: options.model ?? "scripted", input: options.input, params: options.params };
    if (options.background) {
      // A lane's create leaves `background` out (OpenAI's WebSocket mode does not take it): tokentail
      // does, sent on the socket itself, in the lane's stream.
      connection.send({ type: "response.create", stream_id: "long", ...body, background: true });
    } else lane.create(body);
    await until(() => events.filter((e) => e.type === "response.output_text.delta").length >= (options.cutAfter ?? 10));
    const kept = events.slice();
    if (options.background) connection.close(); // else the test kills the gateway
    const responseId = kept[0].response.id;
    const last = kept.at(-1).sequence_number;
    say({ step: "cut", responseId, last });
    const resumed = await client(options.gateways[1]).responses.retrieve(responseId, { stream: true, starting_after: last });
    for await (const event of resumed) kept.push(event);
    const final = await client(options.gateways[1]).responses.retrieve(responseId);
    session.close();
    say({ result: { ...summary(kept), retrieved: { status: final.status, outputText: final.output_text } } });
  },

  // A response steered mid-answer (`connection.send({type: "response.steer", ...})`, as the SDK's
  // types have it), its successor followed on the lane; then steers for an unknown and a finished
  // response. With `cut`, the socket's gateway is killed once the steer was accepted (the test acts
  // on the "accepted" step), and the rest is read on the other gateway: the steered response to
  // its end, then its successor.
  async steer() {
    const { connection, events, session } = await connect(options.gateways[0]);
    const lane = session.lane("chat");
    lane.create({ model: "scripted", input: options.input, params: options.params });
    await until(() => events.filter((e) => e.type === "response.output_text.delta").length >= 5);
    const steeredId = events[0].response.id;
    const successorId = `${steeredId}.1`;
    connection.send({ type: "response.steer", previous_response_id: steeredId, input: options.steer });
    await until(() => events.some((e) => e.type.startsWith("response.steer.")));
    const answer = events.find((e) => e.type.startsWith("response.steer."));
    let steered;
    let successor;
    if (options.cut) {
      steered = events.filter((e) => e !== answer);
      const last = steered.at(-1).sequence_number;
      say({ step: "accepted", responseId: steeredId, last });
      const other = client(options.gateways[1]);
      for await (const e of await other.responses.retrieve(steeredId, { stream: true, starting_after: last })) steered.push(e);
      successor = [];
      for await (const e of await other.responses.retrieve(successorId, { stream: true })) successor.push(e);
    } else {
      await until(() => events.some((e) => e.type === "response.completed" && e.response.id === successorId));
      const start = events.findIndex((e) => e.type === "response.created" && e.response.id === successorId);
      steered = events.slice(0, start).filter((e) => e !== answer);
      successor = events.slice(start);
      connection.send({ type: "response.steer", previous_response_id: `${steeredId.slice(0, -4)}zzzz`, input: "x" });
      connection.send({ type: "response.steer", previous_response_id: successorId, input: "too late" });
      await until(() => events.filter((e) => e.type === "response.steer.failed").length >= 2);
    }
    session.close();
    connection.close();
    say({
      result: {
        answer: { type: answer.type, steeredId: answer.steer.previous_response_id, streamId: answer.stream_id ?? null },
        steered: { ...summary(steered), reason: steered.at(-1).response.incomplete_details?.reason ?? null },
        successor: { ...summary(successor), id: successor[0].response.id, previous: successor[0].response.previous_response_id },
        failed: events.filter((e) => e.type === "response.steer.failed").map((e) => e.error.code),
      },
    });
  },
};

await play(scenarios);
