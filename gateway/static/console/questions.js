// An open question with the forms that answer or expire it, by its kind (docs/api.md, `input.required`):
// approval ({"approved": bool}), choice (one of the schema's enum), text (a string), json (any JSON the
// schema allows: the API checks it). Each action asks to confirm first, then calls the API's own command.

import { actionFailed, api } from "./api.js";
import { clock, h, nav, runPath } from "./dom.js";

function choices(schema) {
  if (Array.isArray(schema?.enum)) return schema.enum;
  const first = (schema?.anyOf ?? schema?.oneOf ?? []).find((option) => Array.isArray(option.enum));
  return first ? first.enum : [];
}

/**
 * @param {string} sessionId
 * @param {{run_id: string, input_id: string, kind: string, prompt: string, schema: any, expires_at: number|null}} question
 * @param {{onDone: () => void, onError: (error: Error) => void, showRun?: boolean}} options
 */
export function questionCard(sessionId, question, { onDone, onError, showRun = false }) {
  const base = `/v1/admin/sessions/${encodeURIComponent(sessionId)}/runs/${encodeURIComponent(question.run_id)}`;
  const status = h("span", { class: "muted", role: "status" });
  const act = async (what, call) => {
    if (!confirm(what)) return;
    for (const button of card.querySelectorAll("button")) button.disabled = true;
    try {
      await call();
      status.textContent = "sent";
      onDone();
    } catch (error) {
      for (const button of card.querySelectorAll("button")) button.disabled = false;
      onError(actionFailed(error));
    }
  };
  const answer = (value) =>
    act(`Answer question ${question.input_id} of run ${question.run_id} with ${JSON.stringify(value)}?`, () =>
      api(`${base}/answers`, { method: "POST", body: { input_id: question.input_id, answer: value } }),
    );
  const expire = () =>
    act(`Expire question ${question.input_id} of run ${question.run_id}? The run goes on as its agent said for an expiry (it fails, or takes the default).`, () =>
      api(`${base}/questions/${encodeURIComponent(question.input_id)}/expire`, { method: "POST" }),
    );

  const form = h("form", { class: "answer", onsubmit: (event) => event.preventDefault() });
  if (question.kind === "approval") {
    form.append(
      h("button", { type: "button", class: "primary", dataset: { action: "approve" }, onclick: () => answer({ approved: true }) }, "Approve"),
      h("button", { type: "button", dataset: { action: "deny" }, onclick: () => answer({ approved: false }) }, "Deny"),
    );
  } else if (question.kind === "choice" && choices(question.schema).length) {
    const select = h("select", { name: "answer", "aria-label": "Answer" }, choices(question.schema).map((value) => h("option", { value: JSON.stringify(value) }, String(value))));
    form.append(select, h("button", { type: "button", class: "primary", dataset: { action: "answer" }, onclick: () => answer(JSON.parse(select.value)) }, "Answer"));
  } else {
    const json = question.kind === "json";
    const input = h("textarea", { name: "answer", rows: json ? 3 : 1, "aria-label": "Answer", placeholder: json ? "JSON" : "answer", spellcheck: "false" });
    const send = () => {
      if (!json) return answer(input.value);
      let value;
      try {
        value = JSON.parse(input.value);
      } catch (error) {
        onError(new Error(`the answer is not JSON: ${error.message}`));
        return undefined;
      }
      return answer(value);
    };
    form.append(input, h("button", { type: "button", class: "primary", dataset: { action: "answer" }, onclick: send }, "Answer"));
  }
  form.append(h("button", { type: "button", class: "danger", dataset: { action: "expire" }, onclick: expire }, "Expire"), status);

  const card = h(
    "div",
    { class: "question", dataset: { inputId: question.input_id, runId: question.run_id, kind: question.kind } },
    h("p", { class: "prompt" }, question.prompt),
    h(
      "span",
      { class: "meta muted" },
      `${question.kind} · ${question.input_id}`,
      question.expires_at ? ` · expires ${clock(question.expires_at)}` : "",
      showRun ? [" · run ", nav(runPath(sessionId, question.run_id), h("code", {}, question.run_id))] : "",
    ),
    form,
  );
  return card;
}
