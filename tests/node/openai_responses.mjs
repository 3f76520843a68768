// npm `openai`'s Responses API client against tokentail gateways, configured as
// docs/openai-responses.md says (baseURL, apiKey, model). Driven by test_openai_responses.py:
//
//   node openai_responses.mjs <scenario> <json options>   options: {gateways: [url, url], apiKey, input, params}
//
// Prints JSON lines: {"step": ...} as the scenario goes (the test may act on them: kill the worker),
// then {"result": {...}} with what the client saw.
import OpenAI from "openai";
import { play, say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const client = (i, apiKey = options.apiKey) =>
  new OpenAI({ baseURL: `${options.gateways[i]}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });

// The text of the deltas of the items the final response kept (a dead attempt's items end incomplete).
function keptText(events, final) {
  const kept = new Set(final.output.filter((item) => item.type === "message").map((item) => item.id));
  return events
    .filter((e) => e.type === "response.output_text.delta" && kept.has(e.item_id))
    .map((e) => e.delta)
    .join("");
}

function summary(events) {
  const final = events.at(-1).response;
  return {
    types: events.map((e) => e.type),
    sequence: events.map((e) => e.sequence_number),
    status: final.status,
    outputText: final.output
      .filter((item) => item.type === "message")
      .flatMap((item) => item.content.map((part) => part.text))
      .join(""),
    keptText: keptText(events, final),
    itemsDone: events
      .filter((e) => e.type === "response.output_item.done" && e.item.type === "message")
      .map((e) => e.item.status),
    outputIds: final.output.map((item) => item.id),
  };
}

const scenarios = {
  // A background stream cut after some text (`cutAfter` deltas, 10 by default: the network drops),
  // resumed on the other gateway with retrieve(stream, starting_after): the test may kill the worker
  // at the cut. `model`: the agent, `scripted` by default.
  async resume() {
    const events = [];
    const stream = await client(0).responses.create({
      model: options.model ?? "scripted",
      input: options.input,
      background: true,
      stream: true,
      params: options.params, // tokentail's run options, as a field of the body
    });
    for await (const event of stream) {
      events.push(event);
      if (events.filter((e) => e.type === "response.output_text.delta").length === (options.cutAfter ?? 10)) break;
    }
    stream.controller.abort();
    const responseId = events[0].response.id;
    const last = events.at(-1).sequence_number;
    say({ step: "cut", responseId, last });
    const resumed = await client(1).responses.retrieve(responseId, { stream: true, starting_after: last });
    for await (const event of resumed) events.push(event);
    const final = await client(0).responses.retrieve(responseId);
    say({ result: { ...summary(events), retrieved: { status: final.status, outputText: final.output_text } } });
  },

  // The built-in agent asks before its calculator: the response ends with an mcp_approval_request,
  // answered by an mcp_approval_response in the next response, on the other gateway.
  async approval() {
    const asked = await client(0).responses.create({ model: "careful", input: "What is 6 * 7?" });
    const request = asked.output.at(-1);
    say({ step: "asked", type: request.type, name: request.name });
    const answered = await client(1).responses.create({
      model: "careful",
      previous_response_id: asked.id,
      input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }],
    });
    say({
      result: {
        asked: { status: asked.status, type: request.type, name: request.name },
        answered: { status: answered.status, text: answered.output_text, previous: answered.previous_response_id },
        askedId: asked.id,
      },
    });
  },

  // Cancel from the other gateway while the run streams; then a wrong key.
  async cancel() {
    const created = await client(0).responses.create({
      model: "scripted",
      input: options.input,
      background: true,
      params: options.params,
    });
    let polled = created;
    while (polled.status !== "in_progress") polled = await client(1).responses.retrieve(created.id);
    const cancelled = await client(1).responses.cancel(created.id);
    let refused = null;
    try {
      await client(0, "not-a-key-0123456789").responses.retrieve(created.id);
    } catch (error) {
      refused = { name: error.constructor.name, status: error.status, isAuth: error instanceof OpenAI.AuthenticationError };
    }
    say({ result: { created: created.status, cancelled: cancelled.status, refused } });
  },
};

await play(scenarios);
