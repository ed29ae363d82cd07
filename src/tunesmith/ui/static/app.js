// tunesmith ui: the runs table, a run's page, compare, playground and new run, over the dashboard's JSON API.
// Every value from a run folder is put on the page as text (textContent), never as HTML.
"use strict";

const view = document.getElementById("view");
let timer = null; // the one poll running (a live run, or a table with running runs)
let info = { allow_train: false, jobs: [] };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const reply = await fetch(path, options);
  const data = await reply.json().catch(() => ({ error: `HTTP ${reply.status}` }));
  if (reply.status === 401 && path !== "/api/login") { signIn(); throw new Error("sign in first"); }
  if (!reply.ok) throw new Error(data.error || `HTTP ${reply.status}`);
  return data;
}

const fmt = (v, digits = 4) => (typeof v === "number" ? v.toFixed(digits) : v === null || v === undefined ? "—" : String(v));
const seconds = (s) => (typeof s !== "number" ? "—" : s < 90 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`);
const runLink = (name) => el("a", { href: `#/run/${encodeURIComponent(name)}` }, name);
const status = (s) => el("span", { class: `status ${s}` }, s || "—");
const HEADLINE = ["accuracy", "f1_macro", "f1_micro", "f1", "precision_macro", "recall_macro", "exact_match", "rouge_l",
  "spearman", "pearson", "mse", "mae", "perplexity", "loss"];

function stop() { if (timer) { clearInterval(timer); timer = null; } }

function signIn() {
  stop();
  const key = el("input", { type: "password", id: "key", placeholder: "API key", autocomplete: "current-password" });
  const message = el("p", { class: "error" });
  const go = async () => {
    try { await api("/api/login", { key: key.value }); route(); } catch (e) { message.textContent = e.message; }
  };
  view.replaceChildren(el("h1", {}, "Sign in"), el("p", {}, "This dashboard was started with an API key."),
    el("div", { class: "toolbar" }, key, el("button", { onclick: go }, "Sign in")), message);
}

// ---------------------------------------------------------------- runs table
let sortKey = "updated", sortDir = -1, filterText = "";

async function runsPage() {
  const data = await api("/api/runs");
  info = data;
  document.getElementById("root").textContent = data.root;
  document.getElementById("nav-new").hidden = !data.allow_train;
  document.getElementById("nav-monitor").hidden = !data.monitor;
  const filter = el("input", { type: "text", id: "filter", placeholder: "filter: name, model, method, status…", value: filterText, size: 40 });
  const compare = el("button", { id: "compare", disabled: true }, "Compare selected");
  const table = el("table", { id: "runs" });
  const chosen = new Set();
  const columns = [["", null], ["run", "name"], ["status", "status"], ["task", "task"], ["method", "method"],
    ["model", "model"], ["data", "data"], ["base → tuned", "headline"], ["time", "runtime_s"], ["updated", "updated"]];
  const draw = (rows) => {
    const shown = rows.filter((r) => !filterText || [r.name, r.status, r.task, r.method, r.model, r.data, r.headline]
      .join(" ").toLowerCase().includes(filterText.toLowerCase()));
    shown.sort((a, b) => {
      const x = a[sortKey] ?? "", y = b[sortKey] ?? "";
      return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * sortDir;
    });
    const head = el("tr", {}, columns.map(([label, key]) => el("th", {
      class: key ? `sortable ${key === sortKey ? (sortDir > 0 ? "sorted-asc" : "sorted-desc") : ""}` : "",
      onclick: key ? () => { sortDir = key === sortKey ? -sortDir : 1; sortKey = key; draw(rows); } : null,
    }, label)));
    const body = shown.map((r) => el("tr", { "data-run": r.name },
      el("td", {}, el("input", { type: "checkbox", checked: chosen.has(r.name), onchange: (e) => {
        e.target.checked ? chosen.add(r.name) : chosen.delete(r.name);
        compare.disabled = chosen.size < 2;
      } })),
      el("td", {}, runLink(r.name)),
      el("td", { title: r.error || "" }, status(r.status), r.status === "running" ? el("span", { class: "muted step" }, ` step ${r.step}`) : ""),
      el("td", {}, r.task), el("td", {}, r.method), el("td", {}, r.model), el("td", {}, r.data),
      el("td", { class: "headline" }, r.headline), el("td", { class: "num" }, seconds(r.runtime_s)),
      el("td", { class: "muted" }, (r.updated || "").replace("T", " "))));
    table.replaceChildren(head, ...body);
    document.getElementById("count").textContent = `${shown.length} of ${rows.length} runs`;
  };
  filter.addEventListener("input", () => { filterText = filter.value; draw(data.runs); });
  compare.addEventListener("click", () => { location.hash = `#/compare/${[...chosen].map(encodeURIComponent).join(",")}`; });
  view.replaceChildren(el("h1", {}, "Runs"), el("div", { class: "toolbar" }, filter, compare, el("span", { id: "count", class: "muted" })), table);
  draw(data.runs);
  if (!data.runs.length) view.append(el("p", { class: "muted" }, "No run folders here yet."));
  if (data.runs.some((r) => r.status === "running")) {
    timer = setInterval(async () => {
      try { const fresh = await api("/api/runs"); data.runs = fresh.runs; draw(fresh.runs); } catch (e) { stop(); }
    }, 2000);
  }
}

// ---------------------------------------------------------------- charts (uPlot)
function chart(title, xs, series, xlabel, marks) {
  const holder = el("div", { class: "card chart" });
  if (!xs.length) { holder.append(el("p", { class: "muted" }, `${title}: nothing logged yet`)); return holder; }
  const palette = ["#2f6fde", "#d9480f", "#1f8a4c", "#7048e8", "#c2255c", "#0c8599", "#e67700", "#5c940d"];
  const opts = {
    title, width: 560, height: 260, scales: { x: { time: false } },
    axes: [{ label: xlabel, incrs: xlabel === "epoch" ? [1, 2, 5, 10, 20, 50, 100] : undefined }, {}],
    series: [{ label: xlabel }, ...series.map((s, i) => ({
      label: s.label, stroke: palette[i % palette.length], width: 1.6, spanGaps: true,
      points: { show: xs.length < 40 },
    }))],
  };
  if (marks) { // the kept epoch: a dot on every validation series
    opts.series.push({ label: "kept epoch", stroke: "#1f8a4c", width: 0, points: { show: true, size: 11, fill: "#1f8a4c" } });
  }
  const values = [xs, ...series.map((s) => s.values)];
  const kept = marks ? marks.lastIndexOf(true) : -1; // the epoch whose weights the run kept: the last one marked
  if (marks) values.push(xs.map((_, i) => (i === kept ? series[0].values[i] : null)));
  new uPlot(opts, values, holder);
  return holder;
}

function curveCharts(curves) {
  const evalKeys = Object.keys(curves.eval).filter((k) => !["step", "epoch", "kept"].includes(k));
  const main = HEADLINE.filter((k) => evalKeys.includes(k) && k !== "loss" && k !== "perplexity").slice(0, 2);
  const shown = main.length ? main : evalKeys.filter((k) => k === "loss" || k === "perplexity").slice(0, 1);
  return el("div", { class: "charts" },
    chart("training loss", curves.train.step, [{ label: "loss", values: curves.train.loss }], "step"),
    chart("validation", curves.eval.epoch, shown.map((k) => ({ label: k, values: curves.eval[k] })), "epoch", curves.eval.kept));
}

// ---------------------------------------------------------------- a run's page
function metricsTable(m) {
  const base = m.base || {}, tuned = m.tuned || {};
  const keys = HEADLINE.filter((k) => typeof tuned[k] === "number" || typeof base[k] === "number");
  if (!keys.length) return null;
  return el("table", { id: "headline" }, el("tr", {}, el("th", {}, "metric"), el("th", {}, "base"), el("th", {}, "tuned"), el("th", {}, "change")),
    keys.map((k) => el("tr", { "data-metric": k }, el("td", {}, k), el("td", { class: "num" }, fmt(base[k])), el("td", { class: "num" }, fmt(tuned[k])),
      el("td", { class: "num" }, typeof base[k] === "number" && typeof tuned[k] === "number" ? `${tuned[k] - base[k] >= 0 ? "+" : ""}${(tuned[k] - base[k]).toFixed(4)}` : "—"))));
}

function perGroupTables(tuned) {
  const out = [];
  for (const [key, groups] of Object.entries(tuned || {})) {
    if (!key.startsWith("per_") || typeof groups !== "object" || groups === null) continue;
    const rows = Object.entries(groups).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v));
    if (!rows.length) continue;
    const cols = [...new Set(rows.flatMap(([, v]) => Object.keys(v)))];
    out.push(el("h2", {}, key.replace("per_", "per ")), el("table", { class: "per-group" },
      el("tr", {}, el("th", {}, key.replace("per_", "")), cols.map((c) => el("th", {}, c))),
      rows.map(([name, v]) => el("tr", {}, el("td", {}, name), cols.map((c) => el("td", { class: "num" }, fmt(v[c], c === "support" ? 0 : 3)))))));
  }
  return out;
}

function confusion(m) {
  const cm = (m.tuned || {}).confusion_matrix, labels = m.labels;
  if (!Array.isArray(cm) || !Array.isArray(labels) || cm.length !== labels.length) return [];
  const max = Math.max(1, ...cm.flat());
  return [el("h2", {}, "confusion matrix (rows: true label, columns: predicted)"), el("table", { class: "cm", id: "confusion" },
    el("tr", {}, el("th", {}, ""), labels.map((l) => el("th", {}, l))),
    cm.map((row, i) => el("tr", {}, el("th", {}, labels[i]), row.map((n, j) => el("td", {
      style: `background: rgba(47,111,222,${(0.08 + 0.7 * n / max).toFixed(2)}); ${i === j ? "font-weight:700" : ""}`,
    }, n)))))];
}

function stagesTable(m) {
  if (!Array.isArray(m.stages)) return [];
  const pick = (o) => { const k = HEADLINE.find((h) => typeof (o || {})[h] === "number"); return k ? `${k} ${fmt(o[k])}` : "—"; };
  return [el("h2", {}, "stages"), el("table", { id: "stages" },
    el("tr", {}, ["stage", "method", "task", "own metric (tuned)", "on the target", "scored as"].map((h) => el("th", {}, h))),
    m.stages.map((s) => el("tr", {}, el("td", {}, s.name), el("td", {}, s.method), el("td", {}, s.task || ""),
      el("td", {}, pick((s.own || {}).tuned)), el("td", {}, pick(s.target)), el("td", { class: "muted" }, s.target_kind || ""))))];
}

function continualTable(state, m) {
  const matrix = state.matrix, names = (m.continual || {}).experiences;
  if (!Array.isArray(matrix) || !Array.isArray(names)) return [];
  const c = m.continual;
  return [el("h2", {}, `continual: ${c.metric} after each experience (rows) on each experience (columns)`),
    el("table", { class: "cm", id: "continual" }, el("tr", {}, el("th", {}, "after \\ on"), names.map((n) => el("th", {}, n))),
      matrix.map((row, i) => el("tr", {}, el("th", {}, names[i] || `#${i + 1}`), names.map((_, j) => el("td", {}, fmt(row[j], 3)))))),
    el("p", {}, `average ${fmt(c.average_accuracy)}, backward transfer ${fmt(c.bwt)}, strategy ${(c.strategy || []).join?.(" + ") || c.strategy}`)];
}

function dataCheck(check) {
  if (!check || (!check.errors && !check.warnings)) return [];
  const errors = check.errors || [], warnings = check.warnings || [];
  return [el("h2", {}, "data check"), el("p", { id: "data-check" }, check.ok ? "OK" : `${errors.length} error(s)`, `, ${warnings.length} warning(s)`),
    el("ul", {}, errors.map((e) => el("li", { class: "error" }, e)), warnings.map((w) => el("li", { class: "warn" }, w)))];
}

function generations(rows) {
  if (!rows.length) return [];
  return [el("h2", {}, "base vs tuned answers (held-out prompts)"), el("table", { id: "generations" },
    el("tr", {}, ["prompt", "reference", "base", "tuned"].map((h) => el("th", {}, h))),
    rows.map((r) => el("tr", {}, ["prompt", "reference", "base", "tuned"].map((k) => el("td", { class: "answer" }, r[k])))))];
}

async function runPage(name) {
  const d = await api(`/api/run?name=${encodeURIComponent(name)}`);
  const m = d.metrics || {};
  const tr = m.train || {};
  const live = el("span", { id: "live", class: "muted" });
  const stopButton = d.allow_train && d.status === "running" && d.started_here
    ? el("button", { class: "danger", id: "stop", onclick: async () => { try { await api("/api/stop", { name }); } finally { route(); } } }, "Stop") : null;
  const charts = el("div", { id: "curves" }, curveCharts(d.curves));
  const parts = [
    el("h1", {}, name, " ", status(d.status), " ", live, " ", stopButton),
    el("p", { class: "muted" }, `${d.task} · ${d.method} · ${d.model} · data ${d.data || "—"} · ${seconds(tr.runtime_s)}` +
      (tr.best_epoch ? ` · kept epoch ${tr.best_epoch} of ${tr.epochs}` : "")),
    d.error ? el("p", { class: "error" }, d.error) : null,
    el("p", {}, el("a", { href: `#/playground/${encodeURIComponent(name)}` }, "Try it in the playground")),
    metricsTable(m), ...(m.base && m.base.kind ? [el("p", { class: "muted" }, `base = ${m.base.kind}`)] : []),
    el("h2", {}, "curves"), charts,
    ...confusion(m), ...perGroupTables(m.tuned), ...stagesTable(m), ...continualTable(d.continual || {}, m),
    ...generations(d.generations || []), ...dataCheck(d.data_check),
    ...(d.children.length ? [el("h2", {}, "inside this run"), el("ul", {}, d.children.map((c) => el("li", {}, runLink(c))))] : []),
    ...(d.plots.length ? [el("h2", {}, "plots"), el("div", {}, d.plots.map((p) => el("img", {
      class: "plot", alt: p, src: `/api/plot?name=${encodeURIComponent(name)}&file=${encodeURIComponent(p)}` })))] : []),
    el("h2", {}, "recipe"), el("pre", { id: "recipe" }, d.recipe_text),
  ];
  const consoleBox = el("pre", { id: "console", hidden: true });
  parts.push(consoleBox);
  view.replaceChildren(...parts.filter(Boolean));
  if (d.status === "running") {
    const poll = async () => {
      try {
        const now = await api(`/api/log?name=${encodeURIComponent(name)}`);
        live.textContent = `step ${now.step}`;
        charts.replaceChildren(curveCharts(now.curves));
        if (now.console) { consoleBox.hidden = false; consoleBox.textContent = now.console; }
        if (now.status !== "running") { stop(); route(); }
      } catch (e) { stop(); }
    };
    poll();
    timer = setInterval(poll, 2000);
  }
}

// ---------------------------------------------------------------- compare
async function comparePage(names) {
  const query = names.map((n) => `name=${encodeURIComponent(n)}`).join("&");
  const d = await api(`/api/compare?${query}`);
  const head = el("tr", {}, el("th", {}, ""), d.names.map((n, i) => el("th", {}, runLink(n), " ", status(d.status[i]))));
  const recipe = Object.entries(d.recipe);
  const loss = d.curves.map((c, i) => ({ label: d.names[i], steps: c.train.step, values: c.train.loss }));
  const xs = [...new Set(loss.flatMap((s) => s.steps))].sort((a, b) => a - b);
  const aligned = loss.map((s) => { const at = new Map(s.steps.map((x, i) => [x, s.values[i]])); return { label: s.label, values: xs.map((x) => at.get(x) ?? null) }; });
  const evalKey = (d.curves.map((c) => Object.keys(c.eval).find((k) => !["step", "epoch", "kept", "loss"].includes(k))).find(Boolean));
  const epochs = [...new Set(d.curves.flatMap((c) => c.eval.epoch))].sort((a, b) => a - b);
  const evals = evalKey ? d.curves.map((c, i) => { const at = new Map(c.eval.epoch.map((x, j) => [x, c.eval[evalKey]?.[j]])); return { label: d.names[i], values: epochs.map((x) => at.get(x) ?? null) }; }) : [];
  view.replaceChildren(el("h1", {}, `Compare ${d.names.length} runs`),
    el("h2", {}, "recipe: the keys that differ"),
    recipe.length ? el("table", { id: "recipe-diff" }, head.cloneNode(true), recipe.map(([k, vals]) => el("tr", {}, el("td", {}, k), vals.map((v) => el("td", {}, v)))))
      : el("p", {}, "The recipes are the same."),
    el("h2", {}, "results"),
    el("table", { id: "compare-metrics" }, head, Object.entries(d.metrics).map(([k, vals]) => el("tr", {}, el("td", {}, k), vals.map((v) => el("td", { class: "num" }, v))))),
    el("h2", {}, "curves"),
    el("div", { class: "charts" }, chart("training loss", xs, aligned, "step"), evalKey ? chart(`validation ${evalKey}`, epochs, evals, "epoch") : null));
}

// ---------------------------------------------------------------- playground
async function playgroundPage(chosen) {
  const data = await api("/api/runs");
  const finished = data.runs.filter((r) => r.status === "finished");
  const select = el("select", { id: "pg-run" }, finished.map((r) => el("option", { value: r.name, selected: r.name === chosen }, `${r.name} (${r.task})`)));
  const text = el("textarea", { id: "pg-text", rows: 4, placeholder: "Type a text (classification) or a chat message (generation)" });
  const out = el("div", { id: "pg-out" });
  const ask = el("button", { id: "pg-ask" }, "Ask both");
  const side = (title, answer) => el("div", { class: "card" }, el("h2", {}, title), answer);
  const show = (a) => {
    if (a === null || a === undefined) return el("p", { class: "muted" }, "—");
    if (typeof a === "string") return el("div", { class: "answer" }, a);
    const bars = (top) => el("table", {}, top.map((t) => el("tr", {}, el("td", {}, t.label), el("td", { class: "num" }, el("span", { class: "bar", style: `width:${Math.round(t.score * 120)}px` }), t.score.toFixed(3)))));
    // label sets: the labels over their thresholds first, then every label's probability
    if (a.top && Array.isArray(a.labels)) return el("div", {}, el("p", { class: "labels" }, "labels: " + (a.labels.join(", ") || "none")), bars(a.top));
    if (a.top) return bars(a.top);
    if (typeof a.value === "number") return el("div", { class: "answer value" }, a.value.toFixed(4));
    if (a.entities) return el("pre", {}, JSON.stringify(a.entities, null, 2));
    return el("pre", {}, JSON.stringify(a, null, 2));
  };
  ask.addEventListener("click", async () => {
    ask.disabled = true; out.replaceChildren(el("p", { class: "muted" }, "answering… (the first question loads the models)"));
    try {
      const a = await api("/api/playground", { name: select.value, text: text.value, max_tokens: 128 });
      out.replaceChildren(el("div", { class: "grid2" }, side("base model", a.base === null && a.base_note ? el("p", { class: "muted" }, a.base_note) : show(a.base)),
        side("tuned model", show(a.tuned))));
    } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
    ask.disabled = false;
  });
  view.replaceChildren(el("h1", {}, "Playground"), el("p", { class: "muted" }, "The base model and the tuned model answer the same input, through the same code as tunesmith serve."),
    finished.length ? el("div", {}, el("div", { class: "toolbar" }, select), text, el("div", { class: "toolbar" }, ask), out) : el("p", {}, "No finished runs yet."));
}

// ---------------------------------------------------------------- new run
async function newRunPage() {
  const data = await api("/api/runs");
  if (!data.allow_train) { view.replaceChildren(el("p", {}, "This dashboard is read-only (start it with --allow-train).")); return; }
  const name = el("input", { type: "text", id: "new-name", placeholder: "run name (folder)", size: 30 });
  const file = el("input", { type: "file", id: "new-file", accept: ".yaml,.yml" });
  const text = el("textarea", { id: "new-recipe", rows: 18, placeholder: "model:\n  name: sentence-transformers/all-MiniLM-L6-v2\ndata:\n  train: data/train.csv\n…" });
  const message = el("p", { class: "error" });
  file.addEventListener("change", async () => { if (file.files[0]) text.value = await file.files[0].text(); });
  const start = el("button", { id: "new-start", onclick: async () => {
    try {
      const run = name.value;
      await api("/api/train", { name: run, recipe: text.value });
      message.className = "muted"; message.textContent = "starting (loading the model and the data)…";
      timer = setInterval(async () => { // until the run's folder exists, or the child stopped before making it
        const c = await api(`/api/console?name=${encodeURIComponent(run)}`).catch(() => null);
        if (!c) return;
        if (c.folder) { location.hash = `#/run/${encodeURIComponent(run)}`; }
        else if (!c.running) { stop(); message.className = "error"; message.textContent = `The run stopped before it began:\n${c.console}`; }
      }, 1000);
    } catch (e) { message.textContent = e.message; }
  } }, "Start training");
  view.replaceChildren(el("h1", {}, "New run"),
    el("p", { class: "muted" }, "The recipe runs as `tunesmith train RECIPE -o RUNS_DIR/NAME`; relative data paths are read from the folder the dashboard was started in."),
    el("div", { class: "toolbar" }, name, file), text, el("div", { class: "toolbar" }, start), message);
}

// ---------------------------------------------------------------- monitor (serve --collect)
async function monitorPage() {
  const d = await api("/api/monitor");
  if (!d.collect) { view.replaceChildren(el("p", {}, "Start the dashboard with --collect DIR (the folder of tunesmith serve --collect).")); return; }
  const pct = (v) => (typeof v === "number" ? `${(100 * v).toFixed(1)}%` : "—");
  view.replaceChildren(el("h1", {}, "Monitor"), el("p", { class: "muted" }, `requests recorded in ${d.collect}`),
    el("table", { id: "monitor" }, el("tr", {}, ["model", "version", "requests", "predicted labels", "mean confidence", "far from training", "feedback", "agreed"].map((h) => el("th", {}, h))),
      d.models.map((m) => el("tr", {}, el("td", {}, m.model), el("td", { class: "num" }, m.version), el("td", { class: "num" }, m.requests),
        el("td", {}, Object.entries(m.label_shares).map(([k, v]) => `${k} ${pct(v)}`).join(", ") || "—"),
        el("td", { class: "num" }, fmt(m.mean_confidence, 3)), el("td", { class: "num" }, pct(m.far_from_training)),
        el("td", { class: "num" }, m.feedback), el("td", { class: "num" }, pct(m.feedback_agreement))))));
}

// ---------------------------------------------------------------- routing
let routed = 0; // the latest route() call: an older one that fails late must not cover what a newer one drew
async function route() {
  const mine = ++routed;
  stop();
  const [, page, arg] = location.hash.match(/^#\/([^/]*)\/?(.*)$/) || [null, "", ""];
  const name = decodeURIComponent(arg || "");
  try {
    if (page === "run" && name) await runPage(name);
    else if (page === "compare") await comparePage(arg.split(",").map(decodeURIComponent));
    else if (page === "playground") await playgroundPage(name);
    else if (page === "new") await newRunPage();
    else if (page === "monitor") await monitorPage();
    else await runsPage();
  } catch (e) {
    if (e.message !== "sign in first" && mine === routed) view.replaceChildren(el("h1", {}, "Not available"), el("p", { class: "error" }, e.message));
  }
}

window.addEventListener("hashchange", route);
route();
