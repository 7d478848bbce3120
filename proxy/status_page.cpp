// GET /: the status page for a person. Self-contained: no external assets;
// it fetches /status every two seconds and renders it.
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
async function refresh() {
  try {
    const r = await fetch("/status", {cache: "no-store"});
    if (!r.ok) throw new Error("GET /status: HTTP " + r.status);
    render(await r.json());
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
