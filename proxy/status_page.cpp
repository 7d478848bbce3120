// GET /: the status page for a person. Self-contained: no external assets;
// it fetches /status and /history every two seconds, renders the one and
// plots the other (SVG made by its own script).
#include <string>

#include "proxy/status_http.h"

namespace psync::proxy {

const std::string& status_page_html() {
  static const std::string page = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>psync-proxy</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1f23; background: #fafbfc; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
  .sub { color: #586069; margin-bottom: 1em; }
  .cards { display: flex; flex-wrap: wrap; gap: 1em; }
  .card { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: .8em 1em; min-width: 16em; }
  .card dt { color: #586069; float: left; clear: left; width: 9.5em; }
  .card dd { margin: 0 0 .2em 9.5em; font-family: ui-monospace, monospace; word-break: break-all; }
  table { border-collapse: collapse; background: #fff; border: 1px solid #e1e4e8; }
  th, td { padding: .35em .8em; border-bottom: 1px solid #eaecef; text-align: left; }
  th { background: #f6f8fa; font-weight: 600; }
  td.num { text-align: right; font-family: ui-monospace, monospace; }
  .ok { color: #22863a; font-weight: 600; }
  .warn { color: #b08800; font-weight: 600; }
  .bad { color: #cb2431; font-weight: 600; }
  #error { color: #cb2431; margin: .5em 0; }
  .charts { display: flex; flex-wrap: wrap; gap: 1em; }
  .chart { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: .5em .8em; }
  .chart h3 { font-size: .95em; margin: 0 0 .3em; font-weight: 600; }
  .chart svg { display: block; }
  .chart svg .axis { stroke: #d1d5da; stroke-width: 1; }
  .chart svg text { font: 11px ui-monospace, monospace; fill: #586069; }
  .chart svg polyline { fill: none; stroke-width: 1.5; }
  .legend span { display: inline-block; margin-right: 1em; font-size: .85em; }
  .legend i { display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: middle; }
</style>
</head>
<body>
<h1>psync-proxy <span id="version"></span></h1>
<div class="sub">replid <code id="replid">-</code> &middot; offset <code id="offset">-</code>
 &middot; up <span id="uptime">-</span> &middot; updated <span id="updated">never</span></div>
<div id="error"></div>
<div class="cards">
  <div class="card"><h2>Upstream</h2><dl>
    <dt>address</dt><dd id="upstream-address">-</dd>
    <dt>state</dt><dd id="upstream-state">-</dd>
    <dt>mode / version</dt><dd id="upstream-mode">-</dd>
    <dt>syncs</dt><dd id="upstream-syncs">-</dd>
    <dt>transfer</dt><dd id="upstream-transfer">-</dd>
    <dt>last byte</dt><dd id="upstream-last-byte">-</dd>
    <dt>last error</dt><dd id="upstream-error">-</dd>
  </dl></div>
  <div class="card"><h2>Snapshot</h2><dl>
    <dt>offset</dt><dd id="snapshot-offset">-</dd>
    <dt>size</dt><dd id="snapshot-bytes">-</dd>
    <dt>age</dt><dd id="snapshot-age">-</dd>
  </dl></div>
  <div class="card"><h2>Log</h2><dl>
    <dt>offsets</dt><dd id="log-offsets">-</dd>
    <dt>on disk</dt><dd id="log-bytes">-</dd>
    <dt>storage</dt><dd id="storage">-</dd>
  </dl></div>
  <div class="card"><h2>Syncs served</h2><dl>
    <dt>full</dt><dd id="sync-full">-</dd>
    <dt>partial ok</dt><dd id="sync-partial-ok">-</dd>
    <dt>partial err</dt><dd id="sync-partial-err">-</dd>
  </dl></div>
</div>
<h2>Last 15 minutes</h2>
<div class="charts">
  <div class="chart"><h3>ingest from the upstream (bytes/s)</h3><svg id="chart-ingest" width="640" height="160"></svg>
    <div class="legend" id="chart-ingest-legend"></div></div>
  <div class="chart"><h3>replica lag (bytes)</h3><svg id="chart-lag-bytes" width="640" height="160"></svg>
    <div class="legend" id="chart-lag-bytes-legend"></div></div>
  <div class="chart"><h3>replica lag (seconds since the last ACK)</h3><svg id="chart-lag-seconds" width="640" height="160"></svg>
    <div class="legend" id="chart-lag-seconds-legend"></div></div>
</div>
<h2>Replicas (<span id="replica-count">0</span>)</h2>
<table id="replicas">
  <thead><tr><th>address</th><th>listening port</th><th>state</th><th>sync</th>
  <th>acked offset</th><th>lag</th><th>last ACK</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
function bytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function secs(s) {
  if (s === null || s === undefined) return "-";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function set(id, text, cls) {
  const e = document.getElementById(id);
  e.textContent = text;
  e.className = cls || "";
}
function render(s) {
  set("version", s.proxy.version);
  set("replid", s.proxy.replid || "(no snapshot yet)");
  set("offset", String(s.proxy.offset));
  set("uptime", secs(s.proxy.uptime_seconds));
  const up = s.upstream;
  set("upstream-address", up.address);
  set("upstream-state", up.state, up.link_up ? "ok" : (up.state === "backoff" ? "bad" : "warn"));
  set("upstream-mode", (up.mode || "-") + " / " + (up.version || "unknown"));
  set("upstream-syncs", String(up.sync_count));
  set("upstream-transfer", up.state === "transfer"
      ? bytes(up.rdb_bytes_received) + (up.rdb_bytes_expected ? " of " + bytes(up.rdb_bytes_expected) : "")
      : "-");
  set("upstream-last-byte", up.seconds_since_last_byte === null ? "-" : secs(up.seconds_since_last_byte) + " ago");
  set("upstream-error", up.last_error || "none", up.last_error ? "warn" : "");
  if (s.snapshot) {
    set("snapshot-offset", String(s.snapshot.offset));
    set("snapshot-bytes", bytes(s.snapshot.bytes));
    set("snapshot-age", secs(s.snapshot.age_seconds));
  } else {
    set("snapshot-offset", "none yet", "warn");
    set("snapshot-bytes", "-");
    set("snapshot-age", "-");
  }
  set("log-offsets", s.log.first_offset + " .. " + s.log.last_offset);
  set("log-bytes", bytes(s.log.bytes_on_disk) + " in " + s.log.segments + " segment(s)");
  set("storage", s.storage.ok ? "ok" : s.storage.last_error, s.storage.ok ? "ok" : "bad");
  set("sync-full", String(s.counters.sync_full));
  set("sync-partial-ok", String(s.counters.sync_partial_ok));
  set("sync-partial-err", String(s.counters.sync_partial_err));
  const body = document.querySelector("#replicas tbody");
  body.textContent = "";
  for (const r of s.replicas) {
    const tr = document.createElement("tr");
    tr.className = "replica";
    const cells = [r.address, String(r.listening_port), r.state, r.sync, String(r.acked_offset),
                   bytes(r.lag_bytes), r.lag_seconds === null ? "-" : secs(r.lag_seconds) + " ago"];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 2) td.className = r.state === "online" ? "ok" : "warn";
      if (i >= 4) td.classList.add("num");
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  set("replica-count", String(s.replicas.length));
  set("updated", new Date().toLocaleTimeString());
  set("error", "");
}
// The plots: SVG drawn here from GET /history (no external assets).
const COLORS = ["#0366d6", "#d73a49", "#28a745", "#6f42c1", "#e36209", "#005cc5", "#b31d28", "#22863a",
                "#5a32a3", "#735c0f", "#032f62", "#86181d", "#144620", "#3a1d6e", "#a04100", "#1b1f23"];
const SVG = "http://www.w3.org/2000/svg";
function svgEl(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
// series: [{name, points: [[t, v or null], ...]}]; fmt: a value's label.
function chart(id, series, fmt) {
  const svg = document.getElementById(id), legend = document.getElementById(id + "-legend");
  const W = 640, H = 160, L = 84, R = 14, T = 8, B = 20;
  svg.textContent = "";
  legend.textContent = "";
  let tmax = -Infinity, tfirst = Infinity, vmax = 0, any = false;
  for (const s of series) for (const [t, v] of s.points) {
    tmax = Math.max(tmax, t);
    tfirst = Math.min(tfirst, t);
    if (v !== null) { vmax = Math.max(vmax, v); any = true; }
  }
  if (!any) {
    svg.appendChild(svgEl("text", {x: L, y: H / 2}, "no data yet"));
    return;
  }
  // The time the samples cover (a minute at least, 15 at most), the newest at the right.
  const span = Math.min(900, Math.max(60, tmax - tfirst));
  const tmin = tmax - span;
  vmax = vmax > 0 ? vmax * 1.1 : 1;
  const x = t => L + (t - tmin) / span * (W - L - R), y = v => T + (1 - v / vmax) * (H - T - B);
  svg.appendChild(svgEl("line", {x1: L, y1: T, x2: L, y2: H - B, class: "axis"}));
  svg.appendChild(svgEl("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis"}));
  for (const f of [0, 0.5, 1]) {
    svg.appendChild(svgEl("text", {x: L - 4, y: y(f * vmax) + 4, "text-anchor": "end"}, fmt(f * vmax)));
  }
  for (const f of [1, 2 / 3, 1 / 3, 0]) {
    const ago = f * span;
    const label = ago === 0 ? "now" : ago >= 120 ? "-" + Math.round(ago / 60) + " min" : "-" + Math.round(ago) + " s";
    svg.appendChild(svgEl("text", {x: x(tmax - ago), y: H - 5, "text-anchor": f === 1 ? "start" : f === 0 ? "end" : "middle"}, label));
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.filter(p => p[1] !== null && p[0] >= tmin).map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1));
    svg.appendChild(svgEl("polyline", {points: pts.join(" "), stroke: color, "data-name": s.name, "data-points": pts.length}));
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = color;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(s.name));
    legend.appendChild(item);
  });
}
function renderHistory(h) {
  chart("chart-ingest", [{name: "ingest", points: h.samples.map(s => [s.t, s.ingest_bytes_per_second])}],
        v => bytes(Math.round(v)) + "/s");
  const names = [];
  for (const s of h.samples) for (const n in s.replicas) if (!names.includes(n)) names.push(n);
  const lag = k => names.map(n => ({name: n, points: h.samples.map(s => [s.t, s.replicas[n] ? s.replicas[n][k] : null])}));
  chart("chart-lag-bytes", lag(0), v => bytes(Math.round(v)));
  chart("chart-lag-seconds", lag(1), v => v.toFixed(1) + " s");
}
async function refresh() {
  try {
    const r = await fetch("/status", {cache: "no-store"});
    if (!r.ok) throw new Error("GET /status: HTTP " + r.status);
    render(await r.json());
    const h = await fetch("/history", {cache: "no-store"});
    if (!h.ok) throw new Error("GET /history: HTTP " + h.status);
    renderHistory(await h.json());
  } catch (e) {
    set("error", "cannot read /status: " + e.message);
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
)HTML";
  return page;
}

}  // namespace psync::proxy
