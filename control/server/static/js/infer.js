// Inference from the browser: rows as JSON (pandas records) in, the result rows as a table.

import { api, enc } from "./api.js";
import { h, show, table } from "./dom.js";

// One example row: a zero of the right shape for each input of the pipeline's first model.
function example(definition) {
  const step = definition && definition.steps[0];
  const model = step && (step.model || step.champion || step.arms?.[0]?.models[0]);
  if (!model || !model.inputs.length) return [{ tensor: [0, 0] }];
  const row = {};
  for (const input of model.inputs) {
    const dims = input.shape.slice(1).map((d) => (typeof d === "number" && d > 0 ? d : 1));
    const zeros = (ds) => (ds.length ? Array.from({ length: ds[0] }, () => zeros(ds.slice(1))) : 0);
    row[input.name] = zeros(dims);
  }
  return [row];
}

export async function inferPage(name) {
  const info = await api(`/pipelines/${enc(name)}`);
  const input = h("textarea", { id: "infer-input", spellcheck: "false" },
                  JSON.stringify(example(info.definition), null, 1));
  const out = h("div", { id: "infer-result" });
  const submit = async (event) => {
    event.preventDefault();
    out.replaceChildren(h("p", { class: "muted" }, "running..."));
    try {
      JSON.parse(input.value);
    } catch (exc) {
      out.replaceChildren(h("p", { class: "error" }, `Not JSON: ${exc.message}`));
      return;
    }
    try {
      const rows = await api(`/pipelines/${enc(name)}`, { method: "POST", body: input.value,
        headers: { "Content-Type": "application/json; format=pandas-records" } });
      const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
      out.replaceChildren(table(keys.map((k) => ({ label: k, value: (r) => show(r[k]) })), rows));
    } catch (exc) {
      out.replaceChildren(h("p", { class: "error" }, exc.message));
    }
  };
  return { el: h("section", { class: "card" }, h("h1", {}, `${name}: inference`),
    h("p", { class: "muted" }, "A JSON list of rows (pandas records), one key per input."),
    h("form", { onsubmit: submit }, input, h("p", {}, h("button", { type: "submit", id: "infer" }, "Infer"))),
    out) };
}
