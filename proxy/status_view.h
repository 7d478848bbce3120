// What GET /status and GET /metrics show, as plain values: gathered from the
// running proxy by Proxy::status_view() (proxy/status_view.cpp), rendered by
// pure functions (unit tested and fuzzed with hostile strings in every field).
//
// Strings that came from a peer (upstream.last_error, upstream.version,
// upstream.replid, ...) are ASCII-safe when the proxy fills the view (see
// protocol/text.h); the renderers do not rely on it: the JSON dump replaces
// bytes that are not UTF-8, the metrics escape label values, and neither
// throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/proxy.h"  // Counters

namespace psync::proxy {

struct StatusView {
  struct ProxyPart {
    std::string version;
    std::string replid;  // "" before the first snapshot
    uint64_t offset = 0;  // visible end: the last byte replicas may read
    double uptime_seconds = 0;
    int64_t pid = 0;
    std::string build;            // build_id(): the version, and a tag for a test build
    int64_t started_unix = 0;     // when the process started (live restarts keep it)
    uint64_t live_restarts = 0;   // SIGUSR2 exec's taken over since (by this or the previous binary)
    std::string live_restart_state;       // LiveRestart::state_name()
    std::string live_restart_last_error;  // "" when the last attempt succeeded
    int64_t live_restart_last_attempt_unix = 0;
    uint64_t live_restart_fallbacks = 0;  // a new binary failed and the previous one took over again
    std::string role = "active";          // "active", or "standby" (proxy/standby.h)
    std::string replid2;                  // "" when none (a standby's takeover sets it)
    int64_t second_offset = -1;
    // For INFO (not in /status):
    std::string run_id;             // the process's run_id (INFO server)
    uint16_t port = 0;              // the replica port
    uint64_t psync_floor = 0;       // first offset a PSYNC may ask for
    uint64_t max_clients = 0;       // --max-clients (INFO clients)
    uint64_t blocked_clients = 0;   // clients blocked in WAIT
    uint64_t commands_since_snapshot = 0;
  };
  struct UpstreamPart {
    std::string address;
    std::string state;  // Link::state_name()
    bool link_up = false;
    std::string last_error;
    uint64_t sync_count = 0;
    uint64_t rdb_bytes_received = 0;
    std::optional<uint64_t> rdb_bytes_expected;
    uint64_t stream_bytes = 0;
    uint64_t commands = 0;
    double seconds_since_last_byte = -1;  // < 0: never (null)
    std::string mode;  // Link::mode_name()
    std::string version;
    std::string replid;
    std::optional<uint64_t> offset;  // psync mode only
    uint64_t partial_resyncs = 0;
    uint64_t total_bytes = 0;     // since the process started (/metrics)
    uint64_t total_commands = 0;  // idem
  };
  struct LogPart {
    uint64_t first_offset = 0;
    uint64_t last_offset = 0;
    uint64_t bytes_on_disk = 0;
    uint64_t segments = 0;
    uint64_t open_files = 0;  // segment files the log holds open
    uint64_t backlog_size_configured = 0;  // --backlog-size
    bool refresh_enabled = true;           // --snapshot-refresh: retention needs refreshed snapshots
  };
  struct StoragePart {
    std::string dir;
    bool ok = true;
    std::string last_error;
    int64_t last_error_unix = 0;  // 0: never (null)
  };
  struct SnapshotPart {
    uint64_t offset = 0;
    uint64_t fullresync_offset = 0;  // offset in +FULLRESYNC: offset minus the SELECT prefix
    uint64_t bytes = 0;
    std::string replid;
    int64_t created_unix = 0;
    double age_seconds = 0;
  };
  struct ReplicaPart {
    std::string address;  // ip:port of the connection
    std::string ip;
    int listening_port = 0;
    std::string state;  // ReplicaSession::state_name()
    bool past_handshake = false;  // a replica (or waiting for a snapshot to become one)
    std::string sync;  // ReplicaSession::sync_name()
    int64_t acked_offset = 0;
    uint64_t sent_offset = 0;
    uint64_t lag_bytes = 0;
    double lag_seconds = -1;  // < 0: never (null)
    std::optional<uint64_t> bulk_bytes_sent;  // during send_bulk
    bool tls = false;        // on --tls-port
    bool ktls_send = false;  // the kernel encrypts what it is sent
  };
  // --tls-port (proxy/tls.h).
  struct TlsPart {
    uint16_t port = 0;
    std::string auth_clients;  // yes, no, optional
    bool ktls_possible = false;  // the kernel's tls module is loaded and OpenSSL has kernel TLS
    uint64_t handshake_failures = 0;
  };

  struct RefreshPart {
    bool enabled = true;
    std::string state;         // Refresher::state_name()
    std::string link_state;    // the second link's state ("" when none)
    uint64_t done = 0;
    uint64_t failed = 0;
    std::string last_error;    // peer_text: ASCII-safe
    std::string last_trigger;
    int64_t last_attempt_unix = 0;  // 0: never (null)
    int64_t last_done_unix = 0;
    double last_duration_seconds = 0;
    uint64_t markers_sent = 0;
    bool aligned = false;      // the fields below hold the last verified alignment
    uint64_t offset = 0;
    int64_t db = 0;
    uint64_t marker = 0;
    uint64_t matched = 0;
  };

  // With --standby-of (proxy/standby.h).
  struct StandbyPart {
    std::string active;  // --standby-of
    std::string state;   // Standby::state_name()
    std::string link_state;  // the link to the active ("" after the takeover)
    double unreachable_seconds = 0;
    double timeout_seconds = 0;
    int64_t took_over_unix = 0;  // 0: not yet (null)
    uint64_t takeover_offset = 0;
    std::string replid_taken_over;
    std::string takeover_reason;
    bool spliced = false;  // the takeover went on from the active's last byte (no full resync)
    // The own master link (proxy/refresher.h, Purpose::kShadow).
    std::string alignment_state;  // Refresher::state_name(): tracking once aligned
    std::string alignment_link_state;
    std::string alignment_last_error;
    uint64_t alignment_attempts_failed = 0;
    uint64_t alignment_matched = 0;  // commands matched on both streams since the alignment
    uint64_t alignment_ahead = 0;    // own-link commands the active has not delivered
    uint64_t alignment_behind = 0;   // active commands the own link has not delivered
  };

  ProxyPart proxy;
  std::optional<StandbyPart> standby;
  std::optional<TlsPart> tls;
  UpstreamPart upstream;
  RefreshPart refresh;
  LogPart log;
  StoragePart storage;
  std::optional<SnapshotPart> snapshot;
  std::vector<ReplicaPart> replicas;  // sessions not closing, in accept order
  Counters counters;
};

// GET /status: the JSON document (README "Status endpoint"), pretty-printed,
// with a final newline. Never throws: bytes that are not UTF-8 become U+FFFD.
std::string render_status_json(const StatusView& view);

// INFO [section] and ROLE as a Redis 7 master answers them (proxy/info.cpp):
// the INFO text (sections server, clients, replication, persistence, stats; "",
// "default", "all" and "everything" for all) and the whole ROLE reply.
std::string render_info(const StatusView& view, std::string_view section);
std::string render_role(const StatusView& view);

// GET /metrics: the Prometheus text format (proxy/metrics.cpp).
std::string render_metrics_text(const StatusView& view);

// /status log.retention: how much of the log is kept, in words.
// refresh_failing: the last refresh attempt failed (the log then grows).
std::string log_retention_text(uint64_t backlog_size_configured, bool refresh_enabled, bool refresh_failing);

}  // namespace psync::proxy
