// GET /metrics: the Prometheus text exposition format (version 0.0.4).
#include <cstdio>
#include <ctime>
#include <string>

#include "proxy/proxy.h"
#include "proxy/replica_session.h"
#include "proxy/upstream.h"

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
std::string replica_label(const ReplicaSession& s) {
  return label("replica", s.ip() + ":" + std::to_string(s.listening_port()));
}

}  // namespace

std::string Proxy::metrics_text() const {
  Writer w;
  const Upstream& up = upstream();
  const Counters& c = counters_;
  auto d = [](uint64_t v) { return static_cast<double>(v); };

  w.family("psync_proxy_info", "gauge", "Version and current replication ID of the proxy.");
  w.sample("psync_proxy_info", 1,
           label("version", PSYNC_PROXY_VERSION) + "," + label("replid", replid_));
  w.metric("psync_proxy_uptime_seconds", "gauge", "Seconds since the proxy started.", uptime_seconds());
  w.metric("psync_proxy_repl_offset_bytes", "gauge",
           "The proxy's master_repl_offset: offset of the last byte replicas may read.", d(visible_end_));

  // Upstream.
  w.metric("psync_proxy_upstream_link_up", "gauge", "1 while the link to the master is streaming.",
           up.link_up() ? 1 : 0);
  w.family("psync_proxy_upstream_state", "gauge", "The upstream link's state (1 for the current one).");
  for (auto s : {Upstream::State::kConnecting, Upstream::State::kHandshake, Upstream::State::kWaitingPayload,
                 Upstream::State::kTransfer, Upstream::State::kStreaming, Upstream::State::kBackoff}) {
    w.sample("psync_proxy_upstream_state", up.state() == s ? 1 : 0, label("state", Upstream::state_name(s)));
  }
  w.metric("psync_proxy_upstream_syncs_total", "counter",
           "Transfers from the master that delivered a complete snapshot.", d(up.sync_count()));
  w.metric("psync_proxy_upstream_partial_resyncs_total", "counter",
           "Upstream links resumed with +CONTINUE (PSYNC masters).", d(up.partial_resyncs()));
  w.metric("psync_proxy_upstream_received_bytes_total", "counter", "Bytes received from the master.",
           d(up.total_bytes()));
  w.metric("psync_proxy_upstream_commands_total", "counter",
           "Commands received from the master and put in the stream (PINGs excluded).",
           d(up.total_commands()));
  w.metric("psync_proxy_upstream_rdb_received_bytes", "gauge",
           "RDB bytes received in the current or last transfer.", d(up.rdb_bytes_received()));
  auto expected = up.rdb_bytes_expected();
  w.metric("psync_proxy_upstream_rdb_expected_bytes", "gauge",
           "Announced size of the RDB being transferred (0 when not announced).", expected ? d(*expected) : 0);
  double since = up.seconds_since_last_byte();
  if (since >= 0) {
    w.metric("psync_proxy_upstream_last_byte_age_seconds", "gauge", "Seconds since the last byte from the master.",
             since);
  }

  // Log and snapshot.
  w.metric("psync_proxy_log_first_offset_bytes", "gauge", "Offset of the first byte the log retains.",
           d(log_.first_offset()));
  w.metric("psync_proxy_log_last_offset_bytes", "gauge", "Offset of the last byte in the log.", d(log_.last_offset()));
  w.metric("psync_proxy_log_disk_bytes", "gauge", "Bytes of log segments on disk.", d(log_.bytes_on_disk()));
  w.metric("psync_proxy_snapshot_bytes", "gauge", "Size of the current snapshot (0: none yet).",
           snapshot_ ? d(snapshot_->size()) : 0);
  if (snapshot_) {
    w.metric("psync_proxy_snapshot_age_seconds", "gauge", "Seconds since the current snapshot was stored.",
             static_cast<double>(time(nullptr) - snapshot_->created_unix()));
  }
  w.metric("psync_proxy_storage_ok", "gauge", "0 while writes to the data directory fail.",
           storage_failing_ ? 0 : 1);

  // Replicas, labelled by address and listening port.
  w.family("psync_proxy_replica_state", "gauge", "Each replica's state (1 for the current one).");
  for (const auto& s : sessions_) {
    if (s->closing() || !s->past_handshake()) continue;
    std::string who = replica_label(*s);
    for (auto st : {ReplicaSession::State::kWaitSnapshot, ReplicaSession::State::kSendBulk,
                    ReplicaSession::State::kOnline}) {
      w.sample("psync_proxy_replica_state", s->state() == st ? 1 : 0,
               who + "," + label("state", ReplicaSession::state_name(st)));
    }
  }
  w.family("psync_proxy_replica_acked_offset_bytes", "gauge", "The last offset each replica acknowledged.");
  for (const auto& s : sessions_) {
    if (s->closing() || !s->past_handshake()) continue;
    w.sample("psync_proxy_replica_acked_offset_bytes", static_cast<double>(s->acked_offset()),
             replica_label(*s));
  }
  w.family("psync_proxy_replica_lag_bytes", "gauge", "Bytes each online replica has not acknowledged yet.");
  for (const auto& s : sessions_) {
    if (s->closing() || s->state() != ReplicaSession::State::kOnline) continue;
    w.sample("psync_proxy_replica_lag_bytes", d(lag_bytes(*s)), replica_label(*s));
  }
  w.family("psync_proxy_replica_lag_seconds", "gauge", "Seconds since each online replica's last ACK.");
  for (const auto& s : sessions_) {
    if (s->closing() || s->state() != ReplicaSession::State::kOnline) continue;
    double lag = s->seconds_since_ack();
    w.sample("psync_proxy_replica_lag_seconds", lag < 0 ? 0 : lag,
             replica_label(*s));
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
  w.metric("psync_proxy_auth_failures_total", "counter", "AUTH attempts with a wrong password.", d(c.auth_failures));
  w.metric("psync_proxy_network_received_bytes_total", "counter", "Bytes read from the master and from clients.",
           d(c.net_input_bytes));
  w.metric("psync_proxy_network_sent_bytes_total", "counter", "Bytes sent to replicas and clients.",
           d(c.net_output_bytes));
  return w.take();
}

}  // namespace psync::proxy
