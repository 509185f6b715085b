// A pipeline's experiment (its `experiment_summary` over the last hour of logs): the split's
// actual share of rows per arm against its weight, and each shadow challenger's agreement
// with the champion.

import { api, enc } from "./api.js";
import { barChart, chartBox } from "./charts.js";
import { h, show, table } from "./dom.js";

function weights(definition) {
  const out = {};
  for (const step of definition.steps) {
    if (step.kind !== "random_split") continue;
    const total = step.arms.reduce((sum, arm) => sum + arm.weight, 0);
    for (const arm of step.arms) out[arm.models[arm.models.length - 1].name] = arm.weight / total;
  }
  return out;
}

export async function experimentsPage(name) {
  const base = `/pipelines/${enc(name)}`;
  const split = chartBox(), shadow = chartBox();
  split.id = "chart-split";
  shadow.id = "chart-shadow";
  const splitTable = h("div", {}), shadowTable = h("div", {}), note = h("p", { class: "muted" });
  const splitNote = h("p", { class: "muted" }), shadowNote = h("p", { class: "muted" });

  const render = async () => {
    const end = new Date(Date.now() + 60_000), start = new Date(end - 3_660_000);
    const range = `start=${enc(start.toISOString())}&end=${enc(end.toISOString())}`;
    const [summary, list] = await Promise.all([api(`${base}/experiment?${range}`),
                                               api(`${base}/versions`)]);
    const deployed = list.find((v) => v.deployed) || list[0];
    const weight = deployed ? weights(deployed.definition) : {};
    const models = Object.keys(summary.models);
    note.textContent = `${summary.rows} rows logged in the last hour.`;
    split.hidden = !Object.keys(weight).length;
    splitNote.textContent = split.hidden ? "The deployed version has no A/B split." : "";
    barChart(split, { title: "Split: share of rows vs weight (%)", labels: models, unit: "%",
      series: [{ label: "actual share", values: models.map((m) => 100 * summary.models[m].share) },
               { label: "weight", values: models.map((m) => (m in weight ? 100 * weight[m] : null)) }] });
    splitTable.replaceChildren(table([
      { label: "model", value: (m) => m },
      { label: "rows", value: (m) => summary.models[m].rows, num: true },
      { label: "share", value: (m) => show(summary.models[m].share), num: true },
      { label: "weight", value: (m) => show(weight[m] ?? null), num: true },
      { label: "latency mean (ms)", value: (m) => show(summary.models[m].latency_ms.mean), num: true },
      { label: "check failure rate", value: (m) => show(summary.models[m].check_failure_rate), num: true },
    ], models));
    const pairs = Object.entries(summary.shadows).flatMap(([challenger, s]) =>
      Object.entries(s.vs_champion).map(([field, v]) => ({ challenger, field, ...v, s })));
    shadow.hidden = !pairs.length;
    shadowNote.textContent = shadow.hidden ? "No shadow challenger has answered in the last hour." : "";
    barChart(shadow, { title: "Shadow: agreement with the champion (% of rows)", unit: "%",
      labels: pairs.map((p) => `${p.challenger}: ${p.field}`),
      series: [{ label: "agreement", values: pairs.map((p) => 100 * (1 - p.differ_rate)) }] });
    shadowTable.replaceChildren(table([
      { label: "challenger", value: (p) => p.challenger }, { label: "output", value: (p) => p.field },
      { label: "rows compared", value: (p) => p.compared, num: true },
      { label: "agreement", value: (p) => show(1 - p.differ_rate), num: true },
      { label: "mean |diff|", value: (p) => show(p.mean_abs_diff), num: true },
      { label: "errors", value: (p) => p.s.errors, num: true },
    ], pairs));
  };

  const el = h("div", {},
    h("section", { class: "card" }, h("h1", {}, `${name}: experiments`), note,
      h("h2", {}, "A/B split"), splitNote, h("div", { class: "charts" }, split), splitTable),
    h("section", { class: "card" }, h("h2", {}, "Shadow challengers"), shadowNote,
      h("div", { class: "charts" }, shadow), shadowTable));
  document.getElementById("main").replaceChildren(el);
  await render();
  return { el, refresh: render };
}
