// The AI SDK's own reader of a UI message stream (`readUIMessageStream`, what `useChat` builds its
// message with; each chunk checked against the SDK's chunk schema first) over a stream a renderer
// made. Driven by test_ai_sdk_subagents.py:
//
//   node ai_sdk_read.mjs read <json options>     options: {file: the SSE body}
//
// Prints {"result": {"message": <the message it built>, "outputs": [<each tool part's output state, as
// the client saw it change: {toolCallId, state, preliminary, parts}>], "errors": [...], "invalid": [...]}}.
import { readFile } from "node:fs/promises";
import { readUIMessageStream, uiMessageChunkSchema } from "ai";
import { say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const body = await readFile(options.file, "utf8");
const chunks = body
  .split("\n\n")
  .filter((frame) => frame.startsWith("data: ") && frame !== "data: [DONE]")
  .map((frame) => JSON.parse(frame.slice(6)));
const schema = uiMessageChunkSchema();
const invalid = [];
for (const chunk of chunks) {
  const checked = await schema.validate(chunk);
  if (!checked.success) invalid.push(chunk);
}
const errors = [];
const outputs = [];
let message = null;
const stream = new ReadableStream({
  start(controller) {
    for (const chunk of chunks) controller.enqueue(chunk);
    controller.close();
  },
});
for await (const built of readUIMessageStream({ stream, onError: (error) => errors.push(String(error)) })) {
  message = structuredClone(built);
  for (const part of built.parts) {
    if (part.toolCallId && part.output !== undefined) {
      const seen = { toolCallId: part.toolCallId, state: part.state, preliminary: part.preliminary ?? false };
      const last = outputs.findLast((output) => output.toolCallId === part.toolCallId);
      const texts = (part.output?.parts ?? []).map((inner) => inner.text ?? inner.type);
      if (!last || JSON.stringify(last.texts) !== JSON.stringify(texts) || last.preliminary !== seen.preliminary) {
        outputs.push({ ...seen, texts });
      }
    }
  }
}
say({ result: { message, outputs, errors, invalid } });
