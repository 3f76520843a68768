// @ag-ui/client's own verifier (`verifyEvents`, the one its agents run every stream through) and
// @ag-ui/core's schemas over a list of AG-UI events a renderer made. Driven by test_ag_ui_subagents.py:
//
//   node ag_ui_verify.mjs verify <json options>     options: {file: a JSON file of the events, in order}
//
// Prints {"result": {"verified": <how many events passed the verifier>, "error": <its message or null>,
// "invalid": [<events @ag-ui/core's schema rejects>]}}.
import { readFile } from "node:fs/promises";
import { verifyEvents } from "@ag-ui/client";
import { EventSchemas } from "@ag-ui/core/schemas";
import { from, lastValueFrom, tap } from "rxjs";
import { say } from "./driver.mjs";

const options = JSON.parse(process.argv[3]);
const events = JSON.parse(await readFile(options.file, "utf8"));
const invalid = events.filter((event) => !EventSchemas.safeParse(event).success);
let verified = 0;
let error = null;
try {
  await lastValueFrom(from(events).pipe(verifyEvents(false), tap(() => verified++)), { defaultValue: null });
} catch (failure) {
  error = String(failure.message ?? failure);
}
say({ result: { verified, error, invalid } });
