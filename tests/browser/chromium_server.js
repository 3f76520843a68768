// One headless Chromium for a pytest session (tests/browser/conftest.py): Playwright's browser server,
// run by the Node that ships in the Python playwright package, so it speaks the client's protocol version.
// argv: the playwright-core package directory, the Chromium executable, its flags as JSON.
// Prints the WebSocket endpoint on one line, then serves until its stdin closes (the session ended or died).
const [packageDir, executablePath, flags] = process.argv.slice(2);
const { chromium } = require(packageDir);

(async () => {
  const server = await chromium.launchServer({ executablePath, args: JSON.parse(flags), host: "127.0.0.1", port: 0 });
  process.stdout.write(server.wsEndpoint() + "\n");
  process.stdin.on("close", async () => {
    await server.close();
    process.exit(0);
  });
  process.stdin.resume();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
