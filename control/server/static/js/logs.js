// A pipeline's log rows, newest first: time range, validity and dataset filters, and paging
// through the `x-next-cursor` the logs route returns.

import { api, enc } from "./api.js";
import { h, show, table } from "./dom.js";

const GROUPS = ["time", "in", "out", "check_failures", "anomaly", "metadata"];

function iso(localValue) {
  return localValue ? new Date(localValue).toISOString() : null;
}

function cell(key, value) {
  if (key === "time" && typeof value === "number") return new Date(value).toISOString();
  return show(value);
}

export async function logsPage(name) {
  const start = h("input", { type: "datetime-local", name: "start", step: "1" });
  const end = h("input", { type: "datetime-local", name: "end", step: "1" });
  const valid = h("select", { name: "valid" }, h("option", { value: "" }, "all rows"),
    h("option", { value: "false" }, "failing (valid=False)"),
    h("option", { value: "true" }, "passing (valid=True)"));
  const dataset = h("select", { name: "dataset", multiple: true, size: 3 },
    GROUPS.map((g) => h("option", { value: g }, g)));
  const limit = h("select", { name: "limit" }, [25, 100, 500].map((n) => h("option", { value: n }, n)));
  const rows = h("div", { id: "log-rows" });
  const info = h("p", { class: "muted", id: "log-info" });
  const older = h("button", { class: "secondary", id: "older", type: "button", disabled: true },
                  "Older →");
  const pages = []; // the cursor of each page shown so far (null: the newest)

  const load = async (cursor) => {
    const query = new URLSearchParams({ limit: limit.value });
    let from = iso(start.value), to = iso(end.value);
    if (from || to) { // the route takes both ends or neither
      from = from || new Date(0).toISOString();
      to = to || new Date(Date.now() + 86_400_000).toISOString();
      query.set("start", from);
      query.set("end", to);
    }
    if (valid.value) query.set("valid", valid.value);
    for (const option of dataset.selectedOptions) query.append("dataset", option.value);
    if (cursor) query.set("cursor", cursor);
    const response = await api(`/pipelines/${enc(name)}/logs?${query}`, { raw: true });
    const found = await response.json();
    const next = response.headers.get("x-next-cursor");
    const keys = [...new Set(found.flatMap((r) => Object.keys(r)))];
    rows.replaceChildren(found.length
      ? table(keys.map((k) => ({ label: k, value: (r) => cell(k, r[k]) })), found)
      : h("p", { class: "muted" }, "No log rows match."));
    info.textContent = `page ${pages.length}: ${found.length} rows${next ? "" : " (the oldest)"}`;
    rows.dataset.query = query.toString(); // what the table shows (the browser test waits on it)
    older.disabled = !next;
    older.onclick = () => { pages.push(next); load(next); };
  };
  const apply = (event) => {
    event.preventDefault();
    pages.length = 0;
    pages.push(null);
    load(null);
  };
  const form = h("form", { class: "filters", onsubmit: apply },
    h("label", {}, "from", start), h("label", {}, "to", end), h("label", {}, "rows", valid),
    h("label", {}, "dataset (none: all)", dataset), h("label", {}, "page size", limit),
    h("button", { type: "submit", id: "apply" }, "Apply"),
    h("button", { type: "button", class: "secondary",
                  onclick: () => { if (pages.length > 1) { pages.pop(); load(pages[pages.length - 1]); } } },
      "← Newer"), older);
  pages.push(null);
  await load(null);
  return { el: h("section", { class: "card" }, h("h1", {}, `${name}: logs`), form, info, rows) };
}
