// One pipeline: its steps as a chain, its versions (deploy a previous one), live traffic
// plots from its logs and its consumer lag per partition.

import { api, enc } from "./api.js";
import { chainSvg } from "./chain.js";
import { barChart, chartBox, timeChart } from "./charts.js";
import { h, statusBadge, table, toast, when } from "./dom.js";

const WINDOW = "minutes=10&bucket_s=5";

export async function pipelinePage(name) {
  const base = `/pipelines/${enc(name)}`;
  const head = h("div", {});
  const chain = h("div", { class: "scroll", id: "chain" });
  const versions = h("div", { id: "versions" });
  const charts = {
    throughput: chartBox(), latency: chartBox(), errors: chartBox(), lag: chartBox(),
  };
  for (const [key, el] of Object.entries(charts)) el.id = `chart-${key}`;
  const lagTable = h("div", { id: "lag" });

  const deploy = async (version) => {
    try {
      await api(`${base}/deploy`, { method: "POST", body: { version } });
      toast(`Deploying version ${version}...`);
      await render();
    } catch (exc) {
      toast(`Deploy failed: ${exc.message}`);
    }
  };

  const render = async () => {
    const [info, list, status, series, lag] = await Promise.all([
      api(base), api(`${base}/versions`), api(`${base}/status`),
      api(`${base}/series?${WINDOW}`), api(`${base}/lag`)]);
    head.replaceChildren(h("p", {}, "Status: ", statusBadge(status.status || "Not deployed"),
      info.deployed_version ? ` · deployed version ${info.deployed_version}` : "",
      ` · ${(status.engines || []).length} engines`));
    const shown = list.find((v) => v.deployed) || list[0];
    chain.replaceChildren(shown ? chainSvg(shown.definition) : h("p", { class: "muted" }, "No versions yet."));
    versions.replaceChildren(table([
      { label: "version", value: (v) => v.version },
      { label: "created", value: (v) => when(v.created) },
      { label: "steps", value: (v) => v.steps.join(" → ") },
      { label: "", value: (v) => (v.deployed ? h("strong", {}, "deployed")
        : h("button", { class: "secondary deploy", "data-version": v.version,
                        onclick: () => deploy(v.version) }, "Deploy")) },
    ], list));
    const pct = (values) => values.map((v) => (v === null ? null : 100 * v));
    timeChart(charts.throughput, { title: "Throughput (rows/s)", times: series.time,
      series: [{ label: "rows/s", values: series.rows_per_s }] });
    timeChart(charts.latency, { title: "Latency, end to end (ms)", times: series.time, unit: " ms",
      series: [{ label: "p50", values: series.p50_ms }, { label: "p99", values: series.p99_ms }] });
    timeChart(charts.errors, { title: "Errors and check failures (% of rows)", times: series.time,
      unit: "%", series: [{ label: "errors", values: pct(series.error_rate) },
                          { label: "check failures", values: pct(series.check_failure_rate) }] });
    const labels = lag.map((p) => `${p.topic.split(".").slice(-1)[0]}[${p.partition}]`);
    barChart(charts.lag, { title: "Consumer lag (records)", labels,
      series: [{ label: "lag", values: lag.map((p) => p.lag) }] });
    lagTable.replaceChildren(table([
      { label: "group", value: (p) => p.group }, { label: "topic", value: (p) => p.topic },
      { label: "partition", value: (p) => p.partition, num: true },
      { label: "lag", value: (p) => p.lag, num: true }], lag));
  };

  const el = h("div", {},
    h("section", { class: "card" }, h("h1", {}, name), head, h("h2", {}, "Steps"), chain),
    h("section", { class: "card" }, h("h2", {}, "Versions (newest first)"), versions),
    h("section", { class: "card" }, h("h2", {}, "Traffic, last 10 minutes"),
      h("div", { class: "charts" }, charts.throughput, charts.latency, charts.errors)),
    h("section", { class: "card" }, h("h2", {}, "Consumer lag per partition"),
      h("div", { class: "charts" }, charts.lag), lagTable));
  document.getElementById("main").replaceChildren(el); // charts need their width
  await render();
  return { el, refresh: render };
}
