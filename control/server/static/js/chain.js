// A version's steps drawn as a chain (SVG): one column per step; a split's arms stacked
// in its column, a shadow's challengers under its champion with dashed edges.

const SVG = "http://www.w3.org/2000/svg";
const W = 170, H = 34, GAP_X = 50, GAP_Y = 14;

function node(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// The nodes of each column: [{label, kind: "model" | "split" | "arm" | "shadow"}].
function columns(definition) {
  return definition.steps.map((step) => {
    if (step.kind === "random_split") {
      const total = step.arms.reduce((sum, arm) => sum + arm.weight, 0);
      return [{ label: `split${step.hash_key ? ` by ${step.hash_key}` : ""}`, kind: "split" },
        ...step.arms.map((arm) => ({
          label: `${arm.models.map((m) => m.name).join(" > ")} ${Math.round(100 * arm.weight / total)}%`,
          kind: "arm" }))];
    }
    if (step.kind === "shadow") {
      return [{ label: `${step.champion.name} (champion)`, kind: "model" },
        ...step.challengers.map((c) => ({ label: `${c.name} (shadow)`, kind: "shadow" }))];
    }
    return [{ label: step.model.name, kind: "model" }];
  });
}

export function chainSvg(definition) {
  const cols = [[{ label: "input", kind: "model" }], ...columns(definition),
                [{ label: "result", kind: "model" }]];
  const rows = Math.max(...cols.map((c) => c.length));
  const svg = node("svg", { class: "chain", width: cols.length * (W + GAP_X),
                            height: rows * (H + GAP_Y) + GAP_Y, role: "img",
                            "aria-label": "pipeline steps" });
  const at = (ci, ri) => ({ x: ci * (W + GAP_X) + 4, y: ri * (H + GAP_Y) + GAP_Y });
  cols.forEach((col, ci) => {
    // Edges: from the previous column's answer-path nodes into this column.
    if (ci > 0) {
      const prev = cols[ci - 1];
      const sources = prev[0].kind === "split" ? prev.map((_, ri) => ri).slice(1) : [0];
      col.forEach((n, ri) => {
        if (col[0].kind === "split" && ri > 0) return; // arms hang off their splitter
        for (const si of sources) {
          const a = at(ci - 1, si), b = at(ci, ri);
          svg.append(node("line", { x1: a.x + W, y1: a.y + H / 2, x2: b.x, y2: b.y + H / 2,
                                    class: n.kind === "shadow" ? "shadow" : "" }));
        }
      });
      if (col[0].kind === "split") {
        const a = at(ci, 0);
        col.slice(1).forEach((_, ri) => {
          const b = at(ci, ri + 1);
          svg.append(node("line", { x1: a.x + W / 2, y1: a.y + H, x2: b.x + 10, y2: b.y + H / 2 }));
        });
      }
    }
    col.forEach((n, ri) => {
      const { x, y } = at(ci, ri);
      const offset = n.kind === "arm" ? 10 : 0;
      svg.append(node("rect", { x: x + offset, y, width: W - offset, height: H, class: n.kind }));
      const text = node("text", { x: x + offset + 8, y: y + H / 2 + 4 });
      text.textContent = n.label.length > 24 ? `${n.label.slice(0, 23)}…` : n.label;
      const title = node("title", {});
      title.textContent = n.label;
      text.append(title);
      svg.append(text);
    });
  });
  return svg;
}
