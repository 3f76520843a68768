// A browser page using npm `openai` against tokentail's Responses API, bundled by
// tests/browser/test_openai_page.py as a frontend's build would and served from another origin.
// Query: ?gateway=<url>&key=<chat token or key>&input=<text>. Shows the streamed text in #text and
// the outcome in #status ("done <status>", or "error <message>").
import OpenAI from "openai";

const query = new URLSearchParams(location.search);
const status = document.getElementById("status");
const text = document.getElementById("text");

try {
  const client = new OpenAI({
    baseURL: `${query.get("gateway")}/v1`,
    apiKey: query.get("key"),
    dangerouslyAllowBrowser: true, // a browser holds a chat token for one conversation, never an API key
    maxRetries: 0,
  });
  const stream = await client.responses.create({
    model: "scripted",
    input: query.get("input"),
    background: true,
    stream: true,
  });
  let final = null;
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") text.textContent += event.delta;
    if (event.type === "response.completed") final = event.response;
  }
  const retrieved = await client.responses.retrieve(final.id);
  status.textContent = `done ${retrieved.status} ${retrieved.output_text === text.textContent}`;
} catch (error) {
  status.textContent = `error ${error?.message ?? error}`;
}
