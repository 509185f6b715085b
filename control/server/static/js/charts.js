// Plots with the vendored uPlot (static/vendor/uplot). Each chart's element gets a
// `data-points` attribute: how many values its series plot (the browser test reads it).

import { h } from "./dom.js";

const COLORS = ["#2f6fde", "#e8710a", "#1e8e3e", "#9334e6", "#c0392b", "#12a4af"];

function countPoints(series) {
  return series.reduce((n, s) => n + s.filter((v) => v !== null && v !== undefined).length, 0);
}

function mount(el, opts, data, points) {
  el.dataset.points = String(points);
  if (el._chart) {
    el._chart.setData(data);
    return;
  }
  el.replaceChildren();
  opts.width = Math.max(el.clientWidth || 0, 320);
  el._chart = new uPlot(opts, data, el);
}

// A time series chart: `times` in seconds since the epoch; each series {label, values}.
export function timeChart(el, { title, times, series, unit = "" }) {
  const opts = {
    title, height: 220,
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
      points: { show: true, size: 4 },
      value: (u, v) => (v === null || v === undefined ? "-" : `${v.toPrecision(3)}${unit}`),
    }))],
    axes: [{}, { label: unit.trim() || undefined, size: 60 }],
    scales: { x: { time: true } },
  };
  mount(el, opts, [times, ...series.map((s) => s.values)], countPoints(series.map((s) => s.values)));
}

// Bars per category, two series side by side: each series {label, values} over `labels`.
export function barChart(el, { title, labels, series, unit = "" }) {
  const n = series.length;
  const xs = labels.map((_, i) => i);
  const align = (i) => (n === 2 ? [-1, 1][i] : 0);
  const opts = {
    title, height: 220,
    series: [{ value: (u, i) => labels[i] ?? "" }, ...series.map((s, i) => ({
      label: s.label, fill: COLORS[i % COLORS.length], stroke: COLORS[i % COLORS.length],
      paths: uPlot.paths.bars({ size: [n === 2 ? 0.4 : 0.6, 80], align: align(i) }),
      points: { show: false },
      value: (u, v) => (v === null || v === undefined ? "-" : `${v.toPrecision(3)}${unit}`),
    }))],
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
    axes: [{ splits: () => xs, values: (u, splits) => splits.map((i) => labels[i] ?? "") },
           { size: 60 }],
  };
  mount(el, opts, [xs, ...series.map((s) => s.values)], countPoints(series.map((s) => s.values)));
}

export function chartBox() {
  return h("div", { class: "chart" }, h("div", { class: "empty" }, "loading..."));
}
