// What both drivers share: how they report and end, and a network that can fail mid-stream.

export function say(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

// A fetch that notes each request and whose response bodies can be cut mid-stream, as a dropped
// network would.
export function cuttableFetch() {
  const open = [];
  const requests = [];
  const fetchFn = async (url, init) => {
    requests.push({ method: init?.method ?? "GET", url, lastEventId: init?.headers?.["Last-Event-ID"] ?? null });
    const response = await fetch(url, init);
    if (!response.body) return response;
    const reader = response.body.getReader();
    const body = new ReadableStream({
      start(controller) {
        open.push(() => {
          controller.error(new TypeError("network connection lost"));
          reader.cancel().catch(() => {});
        });
      },
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { fetch: fetchFn, requests, cutAll: () => open.splice(0).forEach((cut) => cut()) };
}

// Waits until the question of the session's run is answered (on another device): the session no
// longer waits for input. `headers` carry the page's chat token.
export async function untilAnswered(gateway, sessionId, headers, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const response = await fetch(`${gateway}/v1/sessions/${sessionId}`, { headers });
    const state = await response.json();
    if (response.ok && state.status !== "waiting_for_input") return;
    if (Date.now() > deadline) throw new Error("timed out waiting for the answer");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// Plays the scenario named on the command line, then exits: 0, or 1 with the error said.
export async function play(scenarios) {
  try {
    await scenarios[process.argv[2]]();
    process.exit(0);
  } catch (error) {
    say({ error: String(error?.stack ?? error) });
    process.exit(1);
  }
}
