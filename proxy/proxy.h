// The proxy: one event loop, one upstream link, one replication log and
// snapshot, any number of replica sessions, and the status endpoint.
//
// Lineage: (replid, snapshot at offset S). The log holds every byte of the
// lineage from S+1. A new upstream SYNC produces a new snapshot; when it is
// complete the proxy starts a new lineage at the log's current end (offsets
// keep growing), disconnects the replicas of the old one and serves the new
// one. Until then, the old lineage goes on being served, with PINGs.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backlog/replication_log.h"
#include "backlog/snapshot_store.h"
#include "proxy/config.h"

namespace psync::proxy {

class Upstream;
class Listener;
class ReplicaSession;
class StatusServer;

struct Counters {
  uint64_t sync_full = 0;
  uint64_t sync_partial_ok = 0;
  uint64_t sync_partial_err = 0;
  uint64_t connections_received = 0;
  uint64_t commands_processed = 0;
  uint64_t net_input_bytes = 0;
  uint64_t net_output_bytes = 0;
  uint64_t rejected_connections = 0;  // all of the below
  uint64_t rejected_protected_mode = 0;
  uint64_t rejected_max_clients = 0;
  uint64_t rejected_out_of_fds = 0;   // accept failed with EMFILE/ENFILE (proxy/listener.h)
  uint64_t auth_failures = 0;         // wrong AUTH
  uint64_t closed_protocol_errors = 0;  // input past a limit or not RESP
  uint64_t closed_handshake_timeouts = 0;
  uint64_t closed_replica_timeouts = 0;  // --replica-timeout (ReplicaSession::on_second)
};

class Proxy {
 public:
  Proxy(uv_loop_t* loop, Config config);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Creates the data directory, binds the listeners, starts the upstream
  // link. false (after one error line) when it cannot.
  bool start();
  // Stops accepting, closes every link. The loop ends once handles close.
  void shutdown();

  uv_loop_t* loop() const { return loop_; }
  const Config& config() const { return config_; }
  Counters& counters() { return counters_; }
  const Counters& counters() const { return counters_; }
  double uptime_seconds() const;

  // ----- The lineage and its log -----
  const std::string& replid() const { return replid_; }  // "" before the first snapshot
  const std::shared_ptr<backlog::Snapshot>& snapshot() const { return snapshot_; }
  backlog::ReplicationLog& log() { return log_; }
  // Offset of the last byte replicas may read: the end of the last complete
  // command (a large command is appended in pieces; only whole commands are
  // shown, so a link lost mid-command can be cut off cleanly).
  uint64_t visible_end() const { return visible_end_; }
  // First offset a PSYNC of this lineage may ask for.
  uint64_t psync_floor() const;
  bool can_continue(std::string_view replid, uint64_t offset) const;

  // ----- Called by the upstream link -----
  // Appends normalized stream bytes; false (after logging) on a disk error.
  bool append_stream(std::string_view bytes, bool at_boundary);
  // The upstream link is gone: drop the unfinished command at the log's end.
  void upstream_lost();
  // A complete, durable snapshot of the upstream: start its lineage.
  void begin_lineage(std::shared_ptr<backlog::Snapshot> snapshot);
  // Freezes the log's end while a snapshot is committed off the loop.
  void set_switching(bool on) { switching_ = on; }
  // Offset the next lineage's snapshot will have (the log's end, now).
  uint64_t lineage_switch_offset() const { return log_.last_offset(); }
  Upstream& upstream() { return *upstream_; }
  const Upstream& upstream() const { return *upstream_; }

  // ----- Storage -----
  // A write to --dir failed (snapshot or log): remembered for /status; one
  // log line per change from healthy to failing.
  void storage_failed(const std::string& what);
  void storage_ok();
  const std::string& storage_error() const { return storage_error_; }

  // ----- Replica sessions -----
  // Invariant: a session is deleted only here, and this is only called from
  // the close callback of the session's poll handle (ReplicaSession::close
  // defers it there; a session whose poll cannot start is never listed). Close
  // callbacks run in their own phase of the loop, never inside another
  // callback, so any loop over sessions() may close sessions as it goes: the
  // list does not change under it.
  void session_closed(ReplicaSession* session);
  const std::list<std::unique_ptr<ReplicaSession>>& sessions() const { return sessions_; }
  // user: from AUTH <user> <pass>; nullopt for AUTH <pass>.
  bool check_password(std::optional<std::string_view> user, std::string_view pass) const;

  // INFO text for a section ("" / "default" / "all": server, replication,
  // stats), ROLE reply, /status JSON.
  std::string info(std::string_view section) const;
  std::string role_reply() const;
  std::string status_json() const;
  // GET /metrics: the Prometheus text format (proxy/metrics.cpp).
  std::string metrics_text() const;

 private:
  static void on_ping_timer(uv_timer_t* t);
  static void on_keepalive_timer(uv_timer_t* t);
  void accept_replica(int fd, const sockaddr_storage& peer);
  // Bytes an online replica has not acknowledged yet (0 for the others).
  uint64_t lag_bytes(const ReplicaSession& s) const;
  void refuse(int fd, const std::string& ip, int port, const std::string& reply, const std::string& why,
              uint64_t& reason_counter);
  void notify_sessions();
  void append_own_ping();

  uv_loop_t* loop_;
  Config config_;
  uint64_t start_ms_;
  Counters counters_;

  backlog::ReplicationLog log_;
  std::shared_ptr<backlog::Snapshot> snapshot_;
  std::string replid_;
  uint64_t visible_end_ = 0;
  bool switching_ = false;

  std::unique_ptr<Upstream> upstream_;
  std::unique_ptr<StatusServer> status_;
  std::list<std::unique_ptr<ReplicaSession>> sessions_;
  uint64_t next_session_id_ = 1;

  std::unique_ptr<Listener> listener_;  // the replica port
  uv_timer_t ping_timer_{};
  uv_timer_t keepalive_timer_{};
  std::string storage_error_;
  int64_t storage_error_unix_ = 0;
  bool storage_failing_ = false;
  bool timers_started_ = false;
  bool stopping_ = false;
};

// 127.0.0.0/8, ::1 and ::ffff:127.x.x.x.
bool is_loopback_ip(std::string_view ip);
// Protected mode, as Redis does it: no password, a non-loopback bind, and a
// client that is not on loopback.
bool protected_mode_refuses(const Config& config, std::string_view peer_ip);

// Equality that takes the same time whatever the strings hold.
bool constant_time_equals(std::string_view a, std::string_view b);

// A fresh random 40-hex replication ID.
std::string random_replid();
// Milliseconds on a monotonic clock.
uint64_t now_ms();

}  // namespace psync::proxy
