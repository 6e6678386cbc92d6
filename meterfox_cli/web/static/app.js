// MeterFox dashboard: five views over the daemon's JSON API (docs/dashboard.md). No framework,
// no build step, no network beyond this daemon. Money texts come from the API (the CLI's own
// formatter); this script never formats dollars itself.
"use strict";

const TOKEN = document.querySelector('meta[name="meterfox-token"]').content;
const VIEWS = ["overview", "explore", "live", "keys", "reconcile"];
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const MAX_LIVE_ROWS = 200;
let live = null;  // the open EventSource while the Live view shows
// The Overview's answers the daemon had ready when it sent the page (web/keeper.py), in a JSON
// data block: the first screen is drawn from them without a request; later views ask the API.
let kept = JSON.parse(document.getElementById("kept")?.textContent || "{}");

// --- small helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "style") setStyle(el, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// One property at a time through the CSSOM: the CSP (style-src 'self') blocks style attributes.
function setStyle(el, text) {
  for (const part of text.split(";")) {
    const at = part.indexOf(":");
    if (at > 0) el.style.setProperty(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, value);
  for (const child of children) el.append(child instanceof Node ? child : String(child));
  return el;
}

// Thousands separators by hand: the first toLocaleString call loads the ICU number data, which
// took 40-300 ms of a cold Overview's first paint (bench/dashboard_load.py, load average ~6).
const int = (n) => {
  if (n === null || n === undefined) return "—";
  const whole = Number(n);
  if (!Number.isInteger(whole)) return whole.toLocaleString("en-US");
  return String(whole).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
};
const tokens = (n) => {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "B tok";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M tok";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k tok";
  return int(n) + " tok";
};
const ms = (n) => (n === null || n === undefined ? "—" : int(Math.round(n)) + " ms");
const pct = (x) => (x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1) + " %";
const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "never");

async function api(path, options) {
  const response = await fetch("api/" + path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

async function change(path, payload) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-MeterFox-Token": TOKEN },
    body: JSON.stringify(payload || {}),
  });
}

function table(columns, rows, foot) {
  // columns: [{title, num, cell(row) -> Node|string}]
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null, scope: "col" }, c.title)));
  const body = rows.map((row) => h("tr", { class: row._class || null },
    columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(row)))));
  const parts = [h("thead", {}, head), h("tbody", {}, body)];
  if (foot) parts.push(h("tfoot", {}, h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, foot(c))))));
  return h("div", { class: "table-wrap" }, h("table", { class: "data" }, parts));
}

function mix(t) {
  const total = t.input + t.output || 1;
  const fresh = Math.max(t.input - t.cached, 0), plain = Math.max(t.output - t.reasoning, 0);
  const part = (cls, n, name) => h("span", { class: cls, style: `width:${(100 * n / total).toFixed(2)}%`, title: `${name}: ${int(n)}` });
  return h("div", { class: "mix", role: "img",
    "aria-label": `input ${int(t.input)} (cached ${int(t.cached)}), output ${int(t.output)} (reasoning ${int(t.reasoning)})` },
  part("input", fresh, "input"), part("cached", t.cached, "cached"),
  part("output", plain, "output"), part("reasoning", t.reasoning, "reasoning"));
}

function mixLegend() {
  return h("p", { class: "mix-legend" }, "token mix:",
    ["input", "cached", "output", "reasoning"].flatMap((n) => [h("i", { class: "mix-" + n }), n]));
}

function fill(id, ...nodes) {
  const el = document.getElementById(id);
  el.replaceChildren(...nodes);
  return el;
}

// --- routing ---------------------------------------------------------------------------------

function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const view = VIEWS.includes(path) ? path : "overview";
  for (const name of VIEWS) document.getElementById("view-" + name).hidden = name !== view;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view !== "live" && live) { live.close(); live = null; }
  const params = new URLSearchParams(query || "");
  ({ overview: showOverview, explore: showExplore, live: showLive, keys: showKeys, reconcile: showReconcile })[view](params);
}

// --- Overview --------------------------------------------------------------------------------

let overviewShown = 0; // as for Explore: only the latest stacking asked for is drawn

async function showOverview(params) {
  const asked = ++overviewShown;
  const by = params.get("by") || "provider";
  for (const b of document.querySelectorAll("[data-by]")) b.setAttribute("aria-pressed", String(b.dataset.by === by));
  // The three answers come with the page when the daemon had them ready (`kept`, used once);
  // else the reads go out together, the headline first (the page preloads the default one:
  // this fetch picks up that answer), and the daemon answers them in parallel.
  const first = kept;
  kept = {};
  const ready = (part, path) => (first[part] ? Promise.resolve(first[part]) : api(path));
  const overview = by === "provider" ? ready("overview", "overview?by=provider")
    : api("overview?by=" + encodeURIComponent(by));
  const providers = ready("providers", "overview/providers");
  const tags = ready("tags", "overview/tags");
  let data;
  try {
    data = await overview;
  } catch (error) {
    if (asked !== overviewShown) return;
    fill("spend", h("p", { class: "tag-bad" }, error.message));
    return;
  }
  if (asked !== overviewShown) return;
  const s = data.spend, m = data.month;
  const card = (label, money, note, id, cls) => h("div", { class: "card " + (cls || "") },
    h("div", { class: "label" }, label), h("div", { class: "value", id }, money.text), note ? h("div", { class: "note" }, note) : null);
  fill("spend",
    card("Today", s.today, null, "spend-today"),
    card("This week", s.week, null, "spend-week"),
    card("This month", s.month, `${int(m.requests)} requests`, "spend-month"),
    card("Projected month end", s.projected_month, `at ${s.burn_per_day.text}/day (last 7 days)`, "spend-projected"),
    card("Unpriced this month", { text: pct(m.unpriced_share) }, `${int(m.unpriced_requests)} requests not in the totals`, "unpriced-share", m.unpriced_requests ? "warn" : ""),
  );
  drawChart(data.daily);
  const topColumns = (first) => [
    { title: first, cell: (r) => r.name },
    { title: "cost", num: true, cell: (r) => r.cost.text },
    { title: "requests", num: true, cell: (r) => int(r.requests) },
    { title: "tokens", num: true, cell: (r) => tokens(r.tokens.input + r.tokens.output) },
    { title: "mix", cell: (r) => mix(r.tokens) },
  ];
  fill("top-models", data.top_models.length ? table(topColumns("model"), data.top_models) : h("p", { class: "muted" }, "No requests this month."), mixLegend());
  fill("top-keys", data.top_keys.length ? table(topColumns("key"), data.top_keys) : h("p", { class: "muted" }, "No requests this month."));
  fill("budgets", data.keys.length ? table([
    { title: "key", cell: (k) => k.name },
    { title: "spent", num: true, cell: (k) => k.spend.text },
    { title: "budget", num: true, cell: (k) => `${k.budget.text}/${k.budget_period}` },
    { title: "used", cell: (k) => budgetBar(k.budget_share) },
  ], data.keys) : h("p", { class: "muted" }, "No key has a budget: `meterfox keys budget NAME 25/month`."));
  // The first screen is in the document: the next frame paints it (bench/dashboard_load.py:
  // "frame" when that frame starts, "painted" once its style, layout and paint are done).
  requestAnimationFrame(() => {
    performance.mark("meterfox:overview-drawn");
    setTimeout(() => performance.mark("meterfox:overview-painted"), 0);
  });
  providers.then((found) => fill("providers", found.providers.length ? table([
    { title: "provider", cell: (p) => p.name },
    { title: "cost", num: true, cell: (p) => p.cost.text },
    { title: "requests", num: true, cell: (p) => int(p.requests) },
    { title: "error rate", num: true, cell: (p) => h("span", { class: p.error_rate > 0.05 ? "tag-bad" : null }, pct(p.error_rate)) },
    { title: "p50", num: true, cell: (p) => ms(p.latency_p50_ms) },
    { title: "p95", num: true, cell: (p) => ms(p.latency_p95_ms) },
  ], found.providers) : h("p", { class: "muted" }, "No requests this month.")),
  (error) => fill("providers", h("p", { class: "tag-bad" }, error.message)));
  tags.then((found) => {
    const blocks = found.tags.map((t) => [h("h3", {}, "tag:" + t.tag), table([
      { title: t.tag, cell: (r) => r.name },
      { title: "cost", num: true, cell: (r) => r.cost.text },
      { title: "requests", num: true, cell: (r) => int(r.requests) },
      { title: "mix", cell: (r) => mix(r.tokens) },
    ], t.rows)]);
    fill("top-tags", ...(blocks.length ? blocks.flat() : [h("p", { class: "muted" }, "No tagged requests this month.")]));
  }, (error) => fill("top-tags", h("p", { class: "tag-bad" }, error.message)));
}

function budgetBar(share) {
  const cls = share >= 1 ? "bar over" : share >= 0.8 ? "bar high" : "bar";
  return h("div", { class: cls, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": String(Math.round(share * 100)), title: pct(share) },
  h("span", { style: `width:${Math.min(share, 1) * 100}%` }));
}

function drawChart(daily) {
  const W = 900, H = 260, left = 56, bottom = 22, top = 10;
  const n = daily.days.length;
  const totals = daily.days.map((_, i) => daily.series.reduce((sum, s) => sum + s.nanousd[i], 0));
  const max = Math.max(...totals, 1);
  const step = (W - left) / n, barW = Math.max(step * 0.72, 1);
  const y = (v) => (H - bottom) - (v / max) * (H - bottom - top);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Daily spend by ${daily.by}, ${daily.days[0]} to ${daily.days[n - 1]}` });
  chart.append(svg("line", { class: "axis", x1: left, x2: W, y1: H - bottom, y2: H - bottom }));
  for (const frac of [0.5, 1]) {
    chart.append(svg("line", { class: "axis", x1: left, x2: W, y1: y(max * frac), y2: y(max * frac), "stroke-dasharray": "3 4" }));
    chart.append(svg("text", { x: left - 6, y: y(max * frac) + 4, "text-anchor": "end" }, "$" + (max * frac / 1e9).toFixed(max * frac >= 1e10 ? 0 : 2)));
  }
  const shown = daily.series.slice(0, PALETTE.length - 1);
  const rest = daily.series.slice(PALETTE.length - 1);
  const series = rest.length ? [...shown, { name: "other", nanousd: daily.days.map((_, i) => rest.reduce((s, r) => s + r.nanousd[i], 0)) }] : shown;
  daily.days.forEach((day, i) => {
    let base = H - bottom;
    series.forEach((s, k) => {
      const v = s.nanousd[i];
      if (!v) return;
      const hgt = (v / max) * (H - bottom - top);
      base -= hgt;
      chart.append(svg("rect", { x: left + i * step, y: base, width: barW, height: Math.max(hgt, 0.5), fill: PALETTE[k] },
        svg("title", {}, `${day} · ${s.name}: $${(v / 1e9).toFixed(4)}`)));
    });
    if (i % 5 === 0 || i === n - 1) chart.append(svg("text", { x: left + i * step + barW / 2, y: H - 6, "text-anchor": "middle" }, day.slice(5)));
  });
  fill("chart", chart);
  fill("legend", ...series.map((s, k) => h("span", {}, h("i", { style: `background:${PALETTE[k]}` }), s.name)));
}

// --- Explore ---------------------------------------------------------------------------------

const EXPLORE_FIELDS = ["by", "since", "until", "provider", "model", "key", "tag"];
let exploreShown = 0; // the latest view asked for: an older view's answer arriving late is dropped

async function showExplore(params) {
  const asked = ++exploreShown;
  const form = document.getElementById("explore-form");
  for (const name of EXPLORE_FIELDS) form.elements[name].value = params.getAll(name).join(name === "by" ? "" : ",") || (name === "by" ? "provider,model" : "");
  const query = exploreQuery(form);
  document.getElementById("csv").href = "api/report.csv?" + query;
  fill("explore-status", "Loading…");
  let report;
  try {
    report = await api("report?" + query);
  } catch (error) {
    if (asked !== exploreShown) return;
    fill("explore-status", h("span", { class: "tag-bad" }, error.message));
    fill("explore-table");
    return;
  }
  if (asked !== exploreShown) return;
  const dims = report.dimensions;
  const rows = report.rows.map((row, i) => ({ ...row, _text: report.texts[i], _class: row.unpriced_requests ? "unpriced" : null }));
  const columns = [
    ...dims.map((d) => ({ title: d, cell: (r) => r[d] === null ? "(unknown)" : r[d] })),
    { title: "cost", num: true, cell: (r) => r._text },
    { title: "requests", num: true, cell: (r) => int(r.requests) },
    { title: "errors", num: true, cell: (r) => int(r.errors) },
    { title: "input", num: true, cell: (r) => tokens(r.input_tokens) },
    { title: "cached", num: true, cell: (r) => tokens(r.cached_tokens) },
    { title: "output", num: true, cell: (r) => tokens(r.output_tokens) },
    { title: "reasoning", num: true, cell: (r) => tokens(r.reasoning_tokens) },
    { title: "unpriced", num: true, cell: (r) => int(r.unpriced_requests) },
    { title: "p50", num: true, cell: (r) => ms(r.latency_p50_ms) },
  ];
  const t = report.total;
  const foot = (c) => {
    if (c === columns[0]) return "total";
    const map = { cost: report.total_text, requests: int(t.requests), errors: int(t.errors), input: tokens(t.input_tokens),
      cached: tokens(t.cached_tokens), output: tokens(t.output_tokens), reasoning: tokens(t.reasoning_tokens),
      unpriced: int(t.unpriced_requests), p50: ms(t.latency_p50_ms) };
    return map[c.title] || "";
  };
  fill("explore-status", `${int(rows.length)} groups`);
  fill("explore-table", rows.length ? table(columns, rows, foot) : h("p", { class: "muted" }, "No requests match; try since=all or fewer filters."));
  const total = document.querySelector("#explore-table tfoot td.num");
  if (total) total.id = "explore-total";
}

function exploreQuery(form) {
  const query = new URLSearchParams();
  for (const name of EXPLORE_FIELDS) {
    const value = form.elements[name].value.trim();
    if (!value) continue;
    if (name === "by" || name === "since" || name === "until") query.set(name, value);
    else for (const part of value.split(",")) if (part.trim()) query.append(name, part.trim());
  }
  return query.toString();
}

// --- Reconcile -------------------------------------------------------------------------------

let reconcileShown = 0;

async function showReconcile(params) {
  const asked = ++reconcileShown;
  const form = document.getElementById("reconcile-form");
  for (const name of ["since", "until"]) form.elements[name].value = params.get(name) || "";
  fill("reconcile-status", "Loading…");
  let found;
  try {
    found = await api("reconcile?" + params.toString());
  } catch (error) {
    if (asked !== reconcileShown) return;
    fill("reconcile-status", h("span", { class: "tag-bad" }, error.message));
    fill("reconcile-table");
    return;
  }
  if (asked !== reconcileShown) return;
  if (!found.synced.length) {
    fill("reconcile-status");
    fill("reconcile-table", h("p", { id: "reconcile-none", class: "note-box" },
      "Nothing has been synced yet: run ", h("code", {}, "meterfox sync"),
      " (with an admin key: openai-admin, anthropic-admin or openrouter-admin) to fetch what the providers billed, then come back."));
    return;
  }
  const count = (n) => n === null ? "—" : int(n);
  const share = (r) => r.coverage === null ? "—" : (100 * r.coverage).toFixed(1) + "%";
  const rows = found.rows.map((row, i) => ({ ...row, _texts: found.texts[i], _class: "row-" + row.status }));
  const columns = [
    ...found.dimensions.map((d) => ({ title: d, cell: (r) => r[d] === null ? "" : r[d] })),
    { title: "proxied req", num: true, cell: (r) => count(r.proxied_requests) },
    { title: "proxied in", num: true, cell: (r) => tokens(r.proxied_input_tokens) },
    { title: "proxied out", num: true, cell: (r) => tokens(r.proxied_output_tokens) },
    { title: "proxied $", num: true, cell: (r) => r._texts.proxied_cost },
    { title: "billed req", num: true, cell: (r) => count(r.billed_requests) },
    { title: "billed in", num: true, cell: (r) => tokens(r.billed_input_tokens) },
    { title: "billed out", num: true, cell: (r) => tokens(r.billed_output_tokens) },
    { title: "billed $", num: true, cell: (r) => r._texts.billed_cost },
    { title: "coverage", num: true, cell: share },
    { title: "status", cell: (r) => h("span", { class: "status-" + r.status }, r.status) },
    { title: "why", cell: (r) => r.note },
  ];
  const t = { ...found.total, _texts: found.total_texts };
  const foot = (c) => c === columns[0] ? "total" : (c.num ? c.cell(t) : "");
  const off = found.rows.filter((r) => r.status !== "match").length;
  fill("reconcile-status", `${int(rows.length)} rows, ${int(off)} not matching · synced: ${found.synced.join(", ")}`);
  fill("reconcile-table", rows.length ? table(columns, rows, foot)
    : h("p", { class: "muted" }, "Nothing proxied or billed in that window for " + found.synced.join(", ") + "."));
  const total = document.querySelector("#reconcile-table tfoot");
  if (total) total.id = "reconcile-total";
}

// --- Live ------------------------------------------------------------------------------------

function showLive() {
  if (live) return;
  const body = document.querySelector("#live-table tbody");
  body.replaceChildren();
  let total = 0, count = 0;
  const shown = new Set();  // rowids on the page: another daemon's lower rowid may come late
  const state = document.getElementById("live-state");
  live = new EventSource("api/live");
  live.onopen = () => { state.textContent = "connected: requests appear as they finish"; };
  live.onerror = () => { state.textContent = "disconnected: reconnecting…"; };
  live.addEventListener("requests", (event) => {
    for (const r of JSON.parse(event.data)) {
      if (shown.has(r.rowid)) continue;
      shown.add(r.rowid);
      count += 1;
      total += r.cost.nanousd || 0;
      const flags = r.failed ? "failed" : r.unpriced ? "unpriced" : null;
      body.prepend(h("tr", { class: flags, "data-rowid": r.rowid },
        h("td", {}, new Date(r.ts * 1000).toLocaleTimeString()),
        h("td", {}, r.provider), h("td", {}, r.model || "(unknown)"), h("td", {}, r.key),
        h("td", { class: "num" }, r.failed ? h("span", { class: "tag-bad" }, `${r.status} ${r.outcome}`) : r.status),
        h("td", { class: "num" }, int(r.input_tokens)), h("td", { class: "num" }, int(r.output_tokens)),
        h("td", { class: "num" }, ms(r.latency_ms)),
        h("td", { class: "num" }, r.unpriced ? h("span", { class: "tag-warn" }, "unpriced") : r.cost.text)));
    }
    while (body.children.length > MAX_LIVE_ROWS) body.lastChild.remove();
    document.getElementById("live-count").textContent = int(count);
    document.getElementById("live-total").textContent = "$" + (total / 1e9).toFixed(total >= 1e9 ? 2 : 6);
  });
}

// --- Keys ------------------------------------------------------------------------------------

async function showKeys() {
  let listing;
  try {
    listing = await api("keys");
  } catch (error) {
    fill("keys-table", h("p", { class: "tag-bad" }, error.message));
    return;
  }
  fill("keys-table", listing.keys.length ? table([
    { title: "name", cell: (k) => k.name },
    { title: "key", cell: (k) => h("code", {}, k.prefix + "…") },
    { title: "providers", cell: (k) => k.providers.join(", ") || "any" },
    { title: "last used", cell: (k) => when(k.last_used) },
    { title: "spent", num: true, cell: (k) => `${k.spend.text} this ${k.spend_period}` },
    { title: "budget", num: true, cell: (k) => (k.budget ? `${k.budget.text}/${k.budget_period}` : "—") },
    { title: "used", cell: (k) => (k.budget ? budgetBar(k.budget_share) : "") },
    { title: "status", cell: (k) => h("span", { class: "status-" + k.status }, k.status) },
    { title: "", cell: (k) => (k.status === "active" ? h("button", { type: "button", class: "danger", "data-revoke": k.name, onclick: () => revoke(k.name) }, "Revoke") : "") },
  ], listing.keys) : h("p", { class: "muted" }, "No proxy keys yet: create one below."));
}

async function revoke(name) {
  if (!window.confirm(`Revoke the key ${name}? Apps using it are refused within a second.`)) return;
  try {
    await change("keys/" + encodeURIComponent(name) + "/revoke");
  } catch (error) {
    window.alert(error.message);
  }
  showKeys();
}

async function createKey(event) {
  event.preventDefault();
  const form = event.target;
  const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
  const status = document.getElementById("create-status");
  try {
    const made = await change("keys", {
      name: form.elements.name.value.trim(),
      providers: list(form.elements.providers.value),
      expires: form.elements.expires.value.trim() || null,
      budget: form.elements.budget.value.trim() || null,
      tags: list(form.elements.tags.value),
      allow_unpriced: form.elements.allow_unpriced.checked,
    });
    form.reset();
    status.textContent = "";
    document.getElementById("new-name").textContent = made.name;
    document.getElementById("new-value").textContent = made.secret;
    document.getElementById("new-secret").hidden = false;
    document.getElementById("copy-secret").focus();
  } catch (error) {
    status.textContent = error.message;
  }
  showKeys();
}

// --- wiring ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("[data-by]")) {
    b.addEventListener("click", () => { location.hash = "#/overview?by=" + b.dataset.by; });
  }
  document.getElementById("explore-form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = "#/explore?" + exploreQuery(event.target);
  });
  document.getElementById("create-form").addEventListener("submit", createKey);
  document.getElementById("reconcile-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const name of ["since", "until"]) {
      const value = event.target.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    location.hash = "#/reconcile?" + query.toString();
  });
  document.getElementById("copy-secret").addEventListener("click", () => {
    navigator.clipboard.writeText(document.getElementById("new-value").textContent).catch(() => {});
  });
  document.getElementById("hide-secret").addEventListener("click", () => {
    document.getElementById("new-value").textContent = "";
    document.getElementById("new-secret").hidden = true;
  });
  window.addEventListener("hashchange", route);
  route();
});
