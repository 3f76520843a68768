// What both Vercel peers' processes share (server.mjs, ai-sdk.mjs): the gateway's route, which follows a
// stream with `resumeExistingStream` (from `?skip=` characters: the package's way to resume), and the
// HTTP server each role runs.
import http from "node:http";

export function follower(context, headers) {
  return async function follow(request, response) {
    const url = new URL(request.url, "http://bench");
    const id = decodeURIComponent(url.pathname.slice("/stream/".length));
    const stream = await context.resumeExistingStream(id, Number(url.searchParams.get("skip") ?? 0));
    if (!stream) {
      response.writeHead(stream === null ? 204 : 404).end();
      return;
    }
    response.writeHead(200, headers);
    const reader = stream.getReader();
    request.on("close", () => reader.cancel().catch(() => {}));
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      response.write(value);
    }
    response.end();
  };
}

export function serve(role, port, handler) {
  http
    .createServer((request, response) => {
      handler(request, response).catch((error) => {
        console.error(error);
        if (!response.headersSent) response.writeHead(500);
        response.end();
      });
    })
    .listen(port, "127.0.0.1", () => console.log(`${role} listening on ${port}`));
}
