// The console's shell: sign-in, navigation between pages, and the list of pipelines.

import { api, ApiError, enc, token } from "./api.js";
import { h, statusBadge, table, toast, when } from "./dom.js";
import { experimentsPage } from "./experiments.js";
import { inferPage } from "./infer.js";
import { logsPage } from "./logs.js";
import { pipelinePage } from "./pipeline.js";

const main = document.getElementById("main");
const REFRESH_MS = 5000;
let timer = null;

function loginPage() {
  const input = h("input", { type: "password", id: "token", autocomplete: "off",
                             placeholder: "bearer token" });
  const error = h("p", { class: "error", id: "login-error" });
  const submit = async (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    try {
      await api("/console/pipelines");
      location.hash = "#/pipelines";
    } catch (exc) {
      token.clear();
      error.textContent = exc instanceof ApiError && exc.status === 401
        ? "That token was refused. It is in stack.json under WEIR_HOME (or WEIR_TOKEN)."
        : `Could not reach the server: ${exc.message}`;
    }
  };
  return h("section", { class: "card login" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "The server's bearer token; it stays in this tab only."),
    h("form", { onsubmit: submit }, input, h("button", { type: "submit" }, "Sign in"), error));
}

async function pipelinesPage() {
  const body = h("div", {}, h("p", { class: "muted" }, "loading..."));
  const render = async () => {
    const rows = await api("/console/pipelines");
    const link = (p) => h("a", { href: `#/pipeline/${enc(p.name)}` }, p.name);
    const engines = (p) => p.engines.map((e) =>
      h("div", {}, `${e.role}${e.remote ? " (remote)" : ""}: ${e.name} `, statusBadge(e.status)));
    body.replaceChildren(rows.length ? table([
      { label: "pipeline", value: link },
      { label: "status", value: (p) => statusBadge(p.status) },
      { label: "deployed version", value: (p) => p.deployed_version || "" },
      { label: "replicas", value: (p) => p.replicas ?? "", num: true },
      { label: "engines", value: engines },
      { label: "sidekicks", value: (p) => String(p.sidekicks.length), num: true },
      { label: "created", value: (p) => when(p.created) },
      { label: "updated", value: (p) => when(p.last_updated) },
    ], rows) : h("p", { class: "muted" }, "No pipelines yet: build one with the SDK or CLI."));
  };
  await render();
  return { el: h("section", { class: "card" }, h("h1", {}, "Pipelines"), body), refresh: render };
}

const PIPELINE_PAGES = {
  pipeline: ["Overview", pipelinePage],
  experiments: ["Experiments", experimentsPage],
  logs: ["Logs", logsPage],
  infer: ["Infer", inferPage],
};

function navigation(page, name) {
  const nav = document.getElementById("nav");
  const links = [h("a", { href: "#/pipelines", class: page === "pipelines" ? "current" : "" },
                   "Pipelines")];
  if (name) {
    for (const [key, [label]] of Object.entries(PIPELINE_PAGES)) {
      links.push(h("a", { href: `#/${key}/${enc(name)}`, class: key === page ? "current" : "" },
                   `${label}${key === "pipeline" ? `: ${name}` : ""}`));
    }
  }
  nav.replaceChildren(...links);
}

async function route() {
  clearInterval(timer);
  const [page = "pipelines", rawName] = location.hash.replace(/^#\//, "").split("/");
  const name = rawName ? decodeURIComponent(rawName) : null;
  const signedIn = Boolean(token.get());
  document.getElementById("signout").hidden = !signedIn;
  if (!signedIn || page === "login") {
    navigation(null, null);
    main.replaceChildren(loginPage());
    return;
  }
  const known = page === "pipelines" || (PIPELINE_PAGES[page] && name);
  navigation(page, known ? name : null);
  try {
    const view = page === "pipelines" || !known ? await pipelinesPage()
      : await PIPELINE_PAGES[page][1](name);
    main.replaceChildren(view.el);
    if (view.refresh) {
      timer = setInterval(() => view.refresh().catch((exc) => toast(exc.message)), REFRESH_MS);
    }
  } catch (exc) {
    if (!(exc instanceof ApiError && exc.status === 401)) {
      main.replaceChildren(h("section", { class: "card" }, h("p", { class: "error" }, exc.message)));
    }
  }
}

document.getElementById("signout").addEventListener("click", () => {
  token.clear();
  location.hash = "#/login";
  route();
});
window.addEventListener("weir:signed-out", () => { location.hash = "#/login"; });
window.addEventListener("hashchange", route);
route();
