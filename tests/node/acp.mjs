// `@agentclientprotocol/sdk`'s client (pinned by this folder's lockfile) over its remote transports, the
// experimental Streamable HTTP and WebSocket streams, against a tokentail gateway's /acp, as an editor
// would connect. Driven by test_acp.py:
//
//   node acp.mjs <scenario> <json options>   options: {url, apiKey, ws}
//
// Prints {"result": {...}} with what the client saw.
import { client, methods } from "@agentclientprotocol/sdk";
import { createHttpStream } from "@agentclientprotocol/sdk/experimental/http-client";
import { createWebSocketStream } from "@agentclientprotocol/sdk/experimental/ws-client";
import WebSocket from "ws";
import { play, say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const headers = { Authorization: `Bearer ${options.apiKey}` };

function connection(query = "") {
  const url = `${options.url}/acp${query}`;
  return options.ws
    ? createWebSocketStream(url.replace(/^http/, "ws"), { WebSocket, headers })
    : createHttpStream(url, { headers });
}

// An editor: keeps each update, allows what it is asked.
function editor() {
  const seen = { updates: [], asked: [] };
  const app = client({ name: "tokentail-tests" })
    .onNotification(methods.client.session.update, (ctx) => {
      seen.updates.push(ctx.params.update);
    })
    .onRequest(methods.client.session.requestPermission, (ctx) => {
      seen.asked.push(ctx.params.toolCall.title);
      return { outcome: { outcome: "selected", optionId: ctx.params.options[0].optionId } };
    });
  return { app, seen };
}

const said = (updates) =>
  updates
    .filter((update) => update.sessionUpdate === "agent_message_chunk")
    .map((update) => update.content.text)
    .join("");

async function prompt(agent, text) {
  const { app, seen } = editor();
  return app.connectWith(connection(agent ? `?agent=${agent}` : ""), async (ctx) => {
    const init = await ctx.request(methods.agent.initialize, { protocolVersion: 1, clientCapabilities: {} });
    const session = await ctx.request(methods.agent.session.new, { cwd: "/work", mcpServers: [] });
    const done = await ctx.request(methods.agent.session.prompt, {
      sessionId: session.sessionId,
      prompt: [{ type: "text", text }],
    });
    return {
      loadSession: init.agentCapabilities.loadSession,
      sessionId: session.sessionId,
      stopReason: done.stopReason,
      said: said(seen.updates),
      kinds: seen.updates.map((update) => update.sessionUpdate),
      asked: seen.asked,
    };
  });
}

async function load(sessionId) {
  const { app, seen } = editor();
  return app.connectWith(connection(), async (ctx) => {
    await ctx.request(methods.agent.initialize, { protocolVersion: 1, clientCapabilities: {} });
    await ctx.request(methods.agent.session.load, { sessionId, cwd: "/work", mcpServers: [] });
    return { said: said(seen.updates), kinds: seen.updates.map((update) => update.sessionUpdate) };
  });
}

await play({
  prompt: async () => say({ result: await prompt("", "What is 6 * 7?") }),
  approval: async () => say({ result: await prompt("approve", "go") }),
  promptThenLoad: async () => {
    const first = await prompt("", "What is 6 * 7?");
    say({ result: { first, loaded: await load(first.sessionId) } });
  },
});
