/**
 * The dashboard's page, served from the package (no CDN, works offline). The script builds every element with
 * `textContent` and attribute setters, never `innerHTML`: job ids, errors and progress are user data, and a value
 * is only ever text. The page's own address is the base of every request, so it works wherever it is mounted.
 */

/** @internal */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>effect-workers dashboard</title>
<link rel="stylesheet" href="app.css">
<script src="app.js" defer></script>
</head>
<body>
<header><h1 id="title">effect-workers dashboard</h1><span id="live" class="badge">connecting…</span><span id="notice" role="status"></span></header>
<main>
<section id="queues"></section>
<section id="runners"></section>
<section id="modules"></section>
</main>
</body>
</html>
`

/** @internal */
export const APP_CSS = `
:root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #667085; --line: #e3e6eb; --accent: #2f6fed; --bad: #c4322b; --ok: #1f8a4c; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--ink); }
header { display: flex; gap: 12px; align-items: center; padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 16px; margin: 0 0 8px; display: flex; gap: 8px; align-items: center; }
h3 { font-size: 13px; margin: 12px 0 4px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); align-items: start; }
section { display: contents; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; overflow: hidden; }
.badge { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: var(--line); color: var(--muted); }
.badge.on { background: #e5f4ea; color: var(--ok); }
.badge.paused, .badge.off { background: #fdecea; color: var(--bad); }
#notice { color: var(--muted); margin-left: auto; }
.counts { display: grid; grid-template-columns: repeat(6, 1fr); gap: 8px; margin: 8px 0; }
.tabs { display: flex; gap: 4px; flex-wrap: wrap; margin: 4px 0; }
.tabs a { font-size: 12px; padding: 2px 8px; border-radius: 10px; color: var(--muted); text-decoration: none; border: 1px solid var(--line); }
.tabs a[aria-selected="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
.count { background: var(--bg); border-radius: 6px; padding: 6px 8px; }
.count b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.count span, .muted { color: var(--muted); font-size: 12px; }
.error { color: var(--bad); white-space: pre-wrap; word-break: break-all; }
table { width: 100%; border-collapse: collapse; font-size: 12px; table-layout: fixed; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; vertical-align: top; }
td.wrap { white-space: pre-wrap; word-break: break-all; }
button { font: inherit; font-size: 12px; padding: 3px 10px; border-radius: 5px; border: 1px solid var(--line); background: var(--card); cursor: pointer; }
button:hover { border-color: var(--accent); color: var(--accent); }
button.danger:hover { border-color: var(--bad); color: var(--bad); }
.actions { display: flex; gap: 6px; flex-wrap: wrap; margin: 6px 0; }
svg.chart { width: 100%; height: 48px; background: var(--bg); border-radius: 6px; }
svg.chart polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; }
`

/** @internal */
export const APP_JS = `"use strict";
(() => {
  const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  let last = "";
  let state = null;
  const armed = new Set();
  // The state shown in each queue's job table (queue key -> state); a link, not a button: read-only pages have none.
  const tabs = new Map();
  const STATES = ["waiting", "delayed", "running", "done", "dead", "cancelled"];

  // Elements from data only: text is always textContent, never markup.
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "onclick") node.addEventListener("click", value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  };
  const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  const notice = (text) => { document.getElementById("notice").textContent = text; };
  const age = (ms) => (typeof ms !== "number" ? "–" : ms < 60000 ? (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s"
    : ms < 3600000 ? (ms / 60000).toFixed(1) + " min" : ms < 172800000 ? (ms / 3600000).toFixed(1) + " h" : (ms / 86400000).toFixed(1) + " d");

  const chart = (values) => {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 59 40");
    svg.setAttribute("preserveAspectRatio", "none");
    const max = Math.max(1, ...values);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", values.map((v, i) => i + "," + (38 - (Number(v) / max) * 36).toFixed(2)).join(" "));
    svg.append(line);
    const title = document.createElementNS(ns, "title");
    title.textContent = "per second, last 60 s (max " + max + ")";
    svg.append(title);
    return svg;
  };

  const act = async (body, label) => {
    notice(label + "…");
    try {
      const response = await fetch(base + "api/action", {
        method: "POST",
        headers: { "content-type": "application/json", "x-dashboard-action": "1" },
        body: JSON.stringify(body)
      });
      const answer = await response.json().catch(() => ({}));
      notice(response.ok ? label + ": done" + (typeof answer.result === "number" ? " (" + answer.result + ")" : "") : label + ": " + (answer.error || response.status));
    } catch (error) {
      notice(label + ": " + error);
    }
  };
  const button = (text, body, label, danger) =>
    el("button", { class: danger ? "danger" : undefined, "data-action": body.action, "data-id": body.id, onclick: () => act(body, label) }, text);
  // Destructive: the first click arms it, the second acts.
  const confirmButton = (text, body, label) => {
    const key = body.queue + ":" + body.action;
    return el("button", {
      class: "danger", "data-action": body.action,
      onclick: () => {
        if (armed.has(key)) { armed.delete(key); act(body, label); } else { armed.add(key); render(state); }
      }
    }, armed.has(key) ? "Click again to " + text.toLowerCase() : text);
  };

  const queueCard = (q, actions, at) => {
    const c = q.counts;
    const count = (name) => el("div", { class: "count", "data-count": name }, el("b", {}, c ? fmt(c[name]) : "–"), el("span", {}, name));
    const key = q.key;
    return el("div", { class: "card", "data-queue": q.name, "data-at": at },
      el("h2", {}, "DurableQueue ", el("span", { class: "name" }, q.name),
        c ? el("span", { class: "badge " + (c.paused ? "paused" : "on"), "data-paused": String(c.paused) }, c.paused ? "paused" : "running") : null),
      q.error ? el("div", { class: "error" }, "store: " + q.error) : null,
      el("div", { class: "counts" }, ["waiting", "delayed", "running", "done", "dead"].map(count),
        el("div", { class: "count", "data-count": "oldest", title: "how long the oldest waiting job has waited" },
          el("b", {}, c ? age(c.oldestWaitingMillis) : "–"), el("span", {}, "oldest waiting"))),
      el("div", { class: "muted", title: "sampled once per interval: the larger of what this process did and what the store's counts grew by" }, "last minute: ", fmt(q.perMinute.offered), " offered, ", fmt(q.perMinute.completed), " done, ",
        fmt(q.perMinute.failed), " failed attempts, ", fmt(q.perMinute.dead), " dead letters"),
      chart(q.chart),
      actions ? el("div", { class: "actions" },
        c && c.paused ? button("Resume", { queue: key, action: "resume" }, "resume " + q.name) : button("Pause", { queue: key, action: "pause" }, "pause " + q.name),
        button("Retry all dead", { queue: key, action: "retryAll" }, "retry all dead letters of " + q.name),
        confirmButton("Purge dead", { queue: key, action: "purge" }, "purge dead letters of " + q.name)) : null,
      listing(q, actions),
      el("h3", {}, "dead letters"),
      q.dead && q.dead.length > 0
        ? el("table", { class: "dead" }, el("tr", {}, el("th", {}, "id"), el("th", { style: undefined }, "attempts"), el("th", {}, "last error"), actions ? el("th", {}, "") : null),
          q.dead.slice(0, 10).map((d) => el("tr", { "data-job": d.id }, el("td", { title: d.id }, d.id), el("td", {}, d.attempts), el("td", { class: "wrap error" }, d.lastError),
            actions ? el("td", {}, button("Retry", { queue: key, action: "retry", id: d.id }, "retry " + d.id)) : null)))
        : el("div", { class: "muted" }, q.dead ? "none" : "not read yet"),
      c && q.dead && c.dead > Math.min(10, q.dead.length) ? el("div", { class: "muted" }, "showing " + Math.min(10, q.dead.length) + " of " + fmt(c.dead)) : null);
  };

  // The jobs of one state (the first page, read by the server's one sampler), chosen by a tab.
  const listing = (q, actions) => {
    const key = q.key;
    const shown = tabs.get(key) || "waiting";
    const counted = (s) => (q.counts && typeof q.counts[s] === "number" ? " " + fmt(q.counts[s]) : "");
    const rows = (q.lists && q.lists[shown]) || null;
    const action = (j) => shown === "dead" ? button("Retry", { queue: key, action: "retry", id: j.id }, "retry " + j.id)
      : shown === "waiting" || shown === "delayed" || shown === "running" ? button("Cancel", { queue: key, action: "cancel", id: j.id }, "cancel " + j.id) : null;
    return el("div", { class: "listing", "data-listing": shown },
      el("h3", {}, "jobs by state"),
      el("div", { class: "tabs", role: "tablist" }, STATES.map((s) => el("a", {
        href: "#", role: "tab", "data-tab": s, "aria-selected": String(s === shown),
        onclick: (event) => { event.preventDefault(); tabs.set(key, s); render(state); }
      }, s + counted(s)))),
      rows && rows.length > 0
        ? el("table", { class: "listed" }, el("tr", {}, el("th", {}, "id"), el("th", {}, "attempts"), el("th", {}, "age"), el("th", {}, "progress"), el("th", {}, "last error"), actions ? el("th", {}, "") : null),
          rows.map((j) => el("tr", { "data-listed": shown, "data-job": j.id }, el("td", { title: j.id }, j.id), el("td", {}, j.attempts),
            el("td", { "data-age": j.age === null ? "" : j.age }, age(j.age)), el("td", { title: j.progress || "" }, j.progress || ""),
            el("td", { class: "error", title: j.error || "" }, j.error || ""), actions ? el("td", {}, action(j)) : null)))
        : el("div", { class: "muted" }, rows ? "none" : "not read yet"),
      rows && q.counts && typeof q.counts[shown] === "number" && q.counts[shown] > rows.length
        ? el("div", { class: "muted" }, "showing the first " + rows.length + " of " + fmt(q.counts[shown])) : null);
  };

  const runnerCard = (r) => el("div", { class: "card", "data-runner": r.name },
    el("h2", {}, "JobRunner ", r.name, el("span", { class: "badge" }, "writer: " + r.writer)),
    el("div", { class: "counts" },
      [["queue depth", r.queueDepth], ["in flight", r.inFlight], ["processes", r.live + "/" + r.slots], ["restarts", r.restarts], ["failed", r.failed]]
        .map(([label, value]) => el("div", { class: "count" }, el("b", {}, typeof value === "number" ? fmt(value) : value), el("span", {}, label)))),
    el("div", { class: "muted" }, "last minute: ", fmt(r.perMinute.processed), " processed, ", fmt(r.perMinute.failed), " failed; total ", fmt(r.processed), " processed"),
    chart(r.chart),
    el("h3", {}, "reader processes"),
    el("table", {}, el("tr", {}, el("th", {}, "pid"), el("th", {}, "running"), el("th", {}, "jobs taken"), el("th", {}, "memory (RSS)")),
      r.processes.map((p) => el("tr", {}, el("td", {}, p.pid), el("td", {}, p.running), el("td", {}, fmt(p.taken)),
        el("td", {}, p.memory === null ? "–" : (p.memory / 1048576).toFixed(1) + " MB")))));

  const moduleTable = (modules) => el("div", { class: "card" },
    el("h2", {}, "In-process modules (Effect metrics)"),
    el("table", {}, el("tr", {}, el("th", {}, "module"), el("th", {}, "name"), el("th", { class: "wide" }, "metrics")),
      modules.map((m) => {
        const v = m.values;
        const parts = [];
        if (m.module === "WorkerQueue" && v.hits_total + v.misses_total > 0) parts.push("hit ratio " + ((100 * v.hits_total) / (v.hits_total + v.misses_total)).toFixed(1) + "%");
        for (const [k, n] of Object.entries(v)) parts.push(k.replace(/_total$/, "") + " " + fmt(n));
        return el("tr", { "data-module": m.module }, el("td", {}, m.module), el("td", { title: m.name }, m.name), el("td", { class: "wrap" }, parts.join(" · ")));
      })));

  const render = (s) => {
    if (s === null) return;
    document.getElementById("title").textContent = s.title;
    document.title = s.title;
    const actions = s.actions && !s.readOnly;
    document.getElementById("queues").replaceChildren(...s.queues.map((q) => queueCard(q, actions, s.at)));
    document.getElementById("runners").replaceChildren(...s.runners.map(runnerCard));
    document.getElementById("modules").replaceChildren(...(s.modules.length > 0 ? [moduleTable(s.modules)] : []));
  };

  const live = document.getElementById("live");
  const source = new EventSource(base + "events");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "badge on"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; live.className = "badge off"; });
  source.addEventListener("state", (event) => {
    if (event.data === last) return;
    last = event.data;
    state = JSON.parse(event.data);
    render(state);
  });
})();
`
