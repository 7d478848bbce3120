// GET /metrics: the Prometheus text exposition format (version 0.0.4).
#include <cstdio>
#include <string>

#include "proxy/replica_session.h"
#include "proxy/status_view.h"
#include "proxy/link.h"

namespace psync::proxy {

namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Writer {
 public:
  // One metric family: HELP and TYPE once, then its samples.
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(const char* name, double value, const std::string& labels = "") {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    char buf[64];
    snprintf(buf, sizeof buf, " %.10g\n", value);
    out_ += buf;
  }
  void metric(const char* name, const char* type, const char* help, double value) {
    family(name, type, help);
    sample(name, value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string label(const char* key, const std::string& value) {
  return std::string(key) + "=\"" + escape_label(value) + "\"";
}

// Replicas are labelled by address and listening port: stable across reconnects.
std::string replica_label(const StatusView::ReplicaPart& r) {
  return label("replica", r.ip + ":" + std::to_string(r.listening_port));
}

}  // namespace

std::string Proxy::metrics_text() const { return render_metrics_text(status_view()); }

std::string render_metrics_text(const StatusView& v) {
  Writer w;
  const StatusView::UpstreamPart& up = v.upstream;
  const Counters& c = v.counters;
  auto d = [](uint64_t x) { return static_cast<double>(x); };

  w.family("psync_proxy_info", "gauge", "Version and current replication ID of the proxy.");
  w.sample("psync_proxy_info", 1,
           label("version", v.proxy.version) + "," + label("replid", v.proxy.replid));
  w.metric("psync_proxy_uptime_seconds", "gauge", "Seconds since the proxy started.", v.proxy.uptime_seconds);
  w.family("psync_proxy_role", "gauge", "The proxy's role (1 for the current one): active, standby of another, or superseded by its standby.");
  for (const char* role : {"active", "standby", "superseded"}) {
    w.sample("psync_proxy_role", v.proxy.role == role ? 1 : 0, label("role", role));
  }
  w.metric("psync_proxy_start_time_seconds", "gauge", "Unix time the process started (live restarts keep it).",
           static_cast<double>(v.proxy.started_unix));
  w.metric("psync_proxy_live_restarts_total", "counter", "Live restarts (SIGUSR2) taken over since the process started.",
           d(v.proxy.live_restarts));
  w.metric("psync_proxy_live_restart_fallbacks_total", "counter",
           "Live restarts in which the new binary failed and the previous one took over again.",
           d(v.proxy.live_restart_fallbacks));
  w.metric("psync_proxy_repl_offset_bytes", "gauge",
           "The proxy's master_repl_offset: offset of the last byte replicas may read.", d(v.proxy.offset));

  // Upstream.
  w.metric("psync_proxy_upstream_link_up", "gauge", "1 while the link to the master is streaming.",
           up.link_up ? 1 : 0);
  w.family("psync_proxy_upstream_state", "gauge", "The upstream link's state (1 for the current one).");
  for (auto s : {Link::State::kResolving, Link::State::kConnecting, Link::State::kHandshake,
                 Link::State::kWaitingPayload, Link::State::kTransfer, Link::State::kStored,
                 Link::State::kStreaming, Link::State::kBackoff}) {
    const char* name = Link::state_name(s);
    w.sample("psync_proxy_upstream_state", up.state == name ? 1 : 0, label("state", name));
  }
  w.metric("psync_proxy_upstream_syncs_total", "counter",
           "Transfers from the master that delivered a complete snapshot.", d(up.sync_count));
  w.metric("psync_proxy_upstream_partial_resyncs_total", "counter",
           "Upstream links resumed with +CONTINUE (PSYNC masters).", d(up.partial_resyncs));
  w.metric("psync_proxy_upstream_received_bytes_total", "counter", "Bytes received from the master.",
           d(up.total_bytes));
  w.metric("psync_proxy_upstream_commands_total", "counter",
           "Commands received from the master and put in the stream (PINGs excluded).",
           d(up.total_commands));
  w.metric("psync_proxy_upstream_rdb_received_bytes", "gauge",
           "RDB bytes received in the current or last transfer.", d(up.rdb_bytes_received));
  w.metric("psync_proxy_upstream_rdb_expected_bytes", "gauge",
           "Announced size of the RDB being transferred (0 when not announced).",
           up.rdb_bytes_expected ? d(*up.rdb_bytes_expected) : 0);
  if (up.seconds_since_last_byte >= 0) {
    w.metric("psync_proxy_upstream_last_byte_age_seconds", "gauge", "Seconds since the last byte from the master.",
             up.seconds_since_last_byte);
  }

  // Log and snapshot.
  w.metric("psync_proxy_log_first_offset_bytes", "gauge", "Offset of the first byte the log retains.",
           d(v.log.first_offset));
  w.metric("psync_proxy_log_last_offset_bytes", "gauge", "Offset of the last byte in the log.", d(v.log.last_offset));
  w.metric("psync_proxy_log_disk_bytes", "gauge", "Bytes of log segments on disk.", d(v.log.bytes_on_disk));
  w.metric("psync_proxy_snapshot_bytes", "gauge", "Size of the current snapshot (0: none yet).",
           v.snapshot ? d(v.snapshot->bytes) : 0);
  if (v.snapshot) {
    w.metric("psync_proxy_snapshot_age_seconds", "gauge", "Seconds since the current snapshot was stored.",
             v.snapshot->age_seconds);
  }
  if (v.snapshot) {
    w.metric("psync_proxy_snapshot_offset_bytes", "gauge", "Offset of the current snapshot (full resyncs go on from it).",
             d(v.snapshot->offset));
  }
  // Snapshot refreshes within the lineage.
  w.metric("psync_proxy_refresh_in_progress", "gauge", "1 while a snapshot refresh runs.",
           v.refresh.state != "idle" && !v.refresh.state.empty() ? 1 : 0);
  w.family("psync_proxy_refreshes_total", "counter", "Snapshot refreshes, by result.");
  w.sample("psync_proxy_refreshes_total", d(v.refresh.done), label("result", "done"));
  w.sample("psync_proxy_refreshes_total", d(v.refresh.failed), label("result", "failed"));
  w.metric("psync_proxy_storage_ok", "gauge", "0 while writes to the data directory fail.", v.storage.ok ? 1 : 0);

  // Replicas, labelled by address and listening port.
  w.family("psync_proxy_replica_state", "gauge", "Each replica's state (1 for the current one).");
  for (const auto& r : v.replicas) {
    if (!r.past_handshake) continue;
    std::string who = replica_label(r);
    for (auto st : {ReplicaSession::State::kWaitSnapshot, ReplicaSession::State::kSendBulk,
                    ReplicaSession::State::kOnline}) {
      const char* name = ReplicaSession::state_name(st);
      w.sample("psync_proxy_replica_state", r.state == name ? 1 : 0, who + "," + label("state", name));
    }
  }
  w.family("psync_proxy_replica_acked_offset_bytes", "gauge", "The last offset each replica acknowledged.");
  for (const auto& r : v.replicas) {
    if (!r.past_handshake) continue;
    w.sample("psync_proxy_replica_acked_offset_bytes", static_cast<double>(r.acked_offset), replica_label(r));
  }
  const std::string online = ReplicaSession::state_name(ReplicaSession::State::kOnline);
  w.family("psync_proxy_replica_lag_bytes", "gauge", "Bytes each online replica has not acknowledged yet.");
  for (const auto& r : v.replicas) {
    if (r.state != online) continue;
    w.sample("psync_proxy_replica_lag_bytes", d(r.lag_bytes), replica_label(r));
  }
  w.family("psync_proxy_replica_lag_seconds", "gauge", "Seconds since each online replica's last ACK.");
  for (const auto& r : v.replicas) {
    if (r.state != online) continue;
    w.sample("psync_proxy_replica_lag_seconds", r.lag_seconds < 0 ? 0 : r.lag_seconds, replica_label(r));
  }

  // Counters.
  w.metric("psync_proxy_sync_full_total", "counter", "Full resyncs served to replicas.", d(c.sync_full));
  w.metric("psync_proxy_sync_partial_ok_total", "counter", "Partial resyncs (+CONTINUE) served to replicas.",
           d(c.sync_partial_ok));
  w.metric("psync_proxy_sync_partial_err_total", "counter",
           "PSYNCs that asked to continue but needed a full resync.", d(c.sync_partial_err));
  w.metric("psync_proxy_connections_received_total", "counter", "Connections accepted on the replica port.",
           d(c.connections_received));
  w.family("psync_proxy_connections_refused_total", "counter",
           "Connections refused or closed by limits or authentication.");
  w.sample("psync_proxy_connections_refused_total", d(c.rejected_protected_mode), label("reason", "protected_mode"));
  w.sample("psync_proxy_connections_refused_total", d(c.rejected_max_clients), label("reason", "max_clients"));
  w.sample("psync_proxy_connections_refused_total", d(c.closed_protocol_errors), label("reason", "protocol_error"));
  w.sample("psync_proxy_connections_refused_total", d(c.closed_handshake_timeouts),
           label("reason", "handshake_timeout"));
  w.sample("psync_proxy_connections_refused_total", d(c.rejected_out_of_fds), label("reason", "out_of_fds"));
  w.sample("psync_proxy_connections_refused_total", d(c.closed_replica_timeouts), label("reason", "replica_timeout"));
  w.sample("psync_proxy_connections_refused_total", d(c.tls_handshake_failures), label("reason", "tls_handshake"));
  w.metric("psync_proxy_auth_failures_total", "counter", "AUTH attempts with a wrong password.", d(c.auth_failures));
  w.metric("psync_proxy_network_received_bytes_total", "counter", "Bytes read from the master and from clients.",
           d(c.net_input_bytes));
  w.metric("psync_proxy_network_sent_bytes_total", "counter", "Bytes sent to replicas and clients.",
           d(c.net_output_bytes));
  return w.take();
}

}  // namespace psync::proxy
