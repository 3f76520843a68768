// tokentail's own browser client (/static/tokentail.js: `Tokentail`, `follow`) in Node, whose
// EventSource (--experimental-eventsource, undici's) stands in for a browser's. Driven by
// test_tokentail_js.py:
//
//   node --experimental-eventsource tokentail_js.mjs <scenario> <json options>
//       options: {gateway, sessionId, token, client: the path of tokentail.js}
//
// Prints JSON lines: {"step": ...} as the scenario goes, then {"result": {...}}.
import { pathToFileURL } from "node:url";
import { play, say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
// Imported from where the gateway serves it: the scenarios start while the gateway is down.
const { Tokentail } = await import(pathToFileURL(options.client).href);

const scenarios = {
  // follow() of a session whose run is going, while the gateway is down: its first connection fails
  // ("refused", the follower's first "reconnecting"), the test starts the gateway again, and the
  // follower goes on to the run's end (then "idle"), or stops ("idle", "gone", "unauthorized").
  async follow() {
    const client = new Tokentail({ baseUrl: options.gateway, storage: null });
    const states = [];
    const follower = await new Promise((resolve) => {
      const followed = client.follow(options.sessionId, {
        token: options.token,
        onState(state) {
          states.push(state);
          if (state === "reconnecting" && !states.slice(0, -1).includes("reconnecting")) say({ step: "refused" });
          if (["idle", "gone", "unauthorized"].includes(state)) setTimeout(() => resolve(followed), 0);
        },
      });
    });
    const seen = [...states];
    follower.close();
    say({ result: { states: seen, turns: follower.turns } });
  },
};

await play(scenarios);
