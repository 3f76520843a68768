// scripts/check's second look at the browser's JavaScript (gateway/static/), after `node --check` parsed
// each file: that its imports link up. esbuild (pinned by this folder's lockfile) bundles the modules it is
// given, writing nothing, and fails on an import whose file is missing or whose name the file does not
// export ("No matching export"): a name renamed on one side only, which no parse sees and the browser
// meets only when it loads the page. No types: TypeScript is not among this folder's packages.
//
//   node tests/node/static_imports.mjs gateway/static/console/console.js ...
//
// The pages import the gateway's own files by their URLs (/static/...), resolved here to the files the
// gateway serves there (gateway/app.py mounts gateway/static/ at /static); a bare name (@ag-ui/client)
// resolves from this folder's node_modules, the version its tests run against.
import { build } from "esbuild";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const served = path.resolve(here, "../../gateway/static");

const staticUrls = {
  name: "static-urls",
  setup(bundle) {
    bundle.onResolve({ filter: /^\/static\// }, (args) => ({ path: path.join(served, args.path.slice("/static/".length)) }));
  },
};

const modules = process.argv.slice(2);
if (modules.length === 0) {
  console.error("static_imports: name the modules to check");
  process.exit(2);
}
try {
  await build({
    entryPoints: modules,
    bundle: true,
    write: false,
    outdir: "unwritten", // write: false; esbuild wants an outdir for several entry points all the same
    format: "esm",
    platform: "browser",
    nodePaths: [path.join(here, "node_modules")],
    plugins: [staticUrls],
    logLevel: "error", // esbuild prints each error, with the file, line and a caret
  });
} catch {
  process.exit(1);
}
