// The proxy: one event loop, one upstream link, one lineage store (log and
// snapshot, backlog/lineage_store.h), any number of replica sessions, and the
// status endpoint.
//
// Lineage: (replid, snapshot at offset S). The log holds every byte of the
// lineage from S+1. A new upstream SYNC produces a new snapshot; when it is
// complete the proxy starts a new lineage at the log's committed end (offsets
// keep growing), disconnects the replicas of the old one and serves the new
// one. Until then, the old lineage goes on being served, with PINGs.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backlog/lineage_store.h"
#include "backlog/snapshot_store.h"
#include "proxy/config.h"
#include "proxy/history.h"
#include "proxy/refresher.h"
#include "proxy/replica_session.h"

namespace psync::proxy {

class LiveFeed;
class LiveRestart;
class Refresher;
class Standby;
class TlsContext;
struct Handover;
class Listener;
class ReplicaSession;
class StatusServer;
struct StatusView;

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
  uint64_t tls_handshake_failures = 0;   // on --tls-port (a certificate refused, not TLS at all, ...)
};

class Proxy : public SessionHost {
 public:
  Proxy(uv_loop_t* loop, Config config);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Creates the data directory (or reopens the lineage it holds), binds the
  // listeners, starts the upstream link. false (after one error line) when
  // it cannot; start_error_code() is then the exit code (1, or 2 for a data
  // directory that cannot be trusted).
  //
  // With a handover (a live restart, proxy/live_restart.h): everything it
  // names is checked first (the lineage reopens at its commit point, each
  // descriptor is what it should be, the settings match) and then taken
  // over. A failed check leaves every peer untouched: false with
  // handover_refused() set (the caller falls back to the previous image).
  bool start(const Handover* handover = nullptr);
  int start_error_code() const { return start_error_code_; }
  bool handover_refused() const { return handover_refused_; }
  const std::string& handover_error() const { return handover_error_; }
  // Stops accepting, closes every link. The loop ends once handles close.
  void shutdown();

  uv_loop_t* loop() const override { return loop_; }
  const Config& config() const override { return config_; }
  Counters& counters() override { return counters_; }
  const Counters& counters() const { return counters_; }
  double uptime_seconds() const;

  // ----- The lineage and its log -----
  backlog::LineageStore& store() { return store_; }
  const backlog::LineageStore& store() const override { return store_; }
  const std::string& replid() const { return store_.replid(); }  // "" before the first snapshot
  const std::shared_ptr<backlog::Snapshot>& snapshot() const { return store_.snapshot(); }
  const backlog::ReplicationLog& log() const { return store_.log(); }
  // Offset of the last byte replicas may read: the store's committed end
  // (only whole commands are committed, so a link lost mid-command is cut
  // off cleanly).
  uint64_t visible_end() const { return store_.committed_end(); }
  // First offset a PSYNC of this lineage may ask for.
  uint64_t psync_floor() const { return store_.psync_floor(); }
  bool can_continue(std::string_view replid, uint64_t offset) const {
    return store_.can_continue(replid, offset);
  }

  // ----- Called by the upstream link -----
  // The upstream link is gone: what it appended and never committed (a
  // command the master did not finish sending, or bytes after a failed
  // append) is taken back out of the log.
  void upstream_lost();
  // A complete, durable snapshot of the upstream, taken at the committed end:
  // start its lineage.
  void begin_lineage(std::shared_ptr<backlog::Snapshot> snapshot);
  // While a new lineage's snapshot is stored off the loop, its offset (the
  // committed end when the transfer ended) must not move: the proxy's own
  // PINGs are held back meanwhile.
  void hold_own_pings(bool on) { own_pings_held_ = on; }
  const LiveFeed& feed() const { return *feed_; }
  LiveFeed& feed() { return *feed_; }
  Refresher& refresher() { return *refresher_; }
  const Refresher& refresher() const { return *refresher_; }
  // A verified snapshot of this lineage at an exact offset (the refresher):
  // full resyncs are served from it from now on; old log segments go.
  // commands_after: about how many live commands were committed after its
  // offset (for INFO's rdb_changes_since_last_save).
  void install_refreshed_snapshot(std::shared_ptr<backlog::Snapshot> snapshot, uint64_t commands_after);
  // Commands of the master committed since the current snapshot.
  uint64_t commands_since_snapshot() const;
  // Deletes the log segments nobody needs (LineageStore::trim): those before
  // X+1-backlog-size, unless a full resync in progress still reads them.
  void trim_log();

  // ----- Role (proxy/standby.h) -----
  // "active", or "standby" while following the active given by --standby-of.
  bool is_standby() const;
  const char* role_name() const { return !superseded_by_.empty() ? "superseded" : is_standby() ? "standby" : "active"; }
  // A standby took this proxy's lineage over (its PUBLISH takeover marker
  // came in the master's stream, naming this lineage): the proxy serves no
  // replica any more, so that one lineage never has two sources.
  void superseded(const std::string& old_replid, const std::string& new_replid);
  const std::string& superseded_by() const { return superseded_by_; }
  std::string replication_refused() const override;
  // The live feed's bytes held the channel's name: a takeover marker?
  void check_takeover_markers(std::string_view bytes);
  // Superseded, with --standby-of: once the master link ended, follow the
  // peer again as its standby (a pair's old active).
  void maybe_follow_again();
  // The standby part, or null without --standby-of.
  const Standby* standby() const { return standby_.get(); }
  // A standby's feed got a full resync from the active: the log starts over
  // at its offset (next: the first byte after the snapshot). Throws.
  void restart_log_at(uint64_t next);
  // The standby takes over: the lineage goes on under a new replid (the
  // active's kept as replid2), and the proxy follows the master itself:
  // with a splice (its own aligned master link) from the active's last byte
  // on, else with a new SYNC and a new lineage.
  void become_active(const std::string& why, Refresher::Splice* splice);
  Standby* standby() { return standby_.get(); }

  // ----- Live restart (proxy/live_restart.h) -----
  LiveRestart& live_restart() { return *live_restart_; }
  const LiveRestart& live_restart() const { return *live_restart_; }
  // What an exec now would lose ("" when nothing): an upstream snapshot
  // transfer, a refresh.
  std::string handover_blocker() const;
  // The upstream link is paused at a boundary (tail: bytes read past it):
  // the store goes back to its commit point and the handover is filled in.
  Handover make_handover(const std::string& tail);
  // The exec failed: the stream goes on from the boundary.
  void resume_after_failed_handover(const std::string& tail);
  int64_t started_unix() const { return started_unix_; }
  uint64_t live_restarts() const { return live_restarts_; }
  uint64_t live_restart_fallbacks() const { return live_restart_fallbacks_; }
  // The service manager (systemd's sd_notify, set by main): "READY=1",
  // "RELOADING=1", "STOPPING=1", "STATUS=...".
  void set_notifier(std::function<void(const std::string&)> notify) { notifier_ = std::move(notify); }
  void notify(const std::string& state) const {
    if (notifier_) notifier_(state);
  }

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
  void session_closed(ReplicaSession* session) override;
  const std::list<std::unique_ptr<ReplicaSession>>& sessions() const override { return sessions_; }
  // user: from AUTH <user> <pass>; nullopt for AUTH <pass>.
  bool check_password(std::optional<std::string_view> user, std::string_view pass) const override;
  std::string start_refresh(const std::string& trigger) override;

  // INFO text for a section ("" / "default" / "all": server, replication,
  // stats), ROLE reply.
  std::string info(std::string_view section) const override;
  std::string role_reply() const override;
  // What /status and /metrics show, as plain values (proxy/status_view.h),
  // and the two renderings of it: the /status JSON, the Prometheus text.
  StatusView status_view() const;
  std::string status_json() const;
  // GET /history: the last 15 minutes, once a second (proxy/history.h).
  std::string history_json() const { return history_.json(); }
  std::string metrics_text() const;

 private:
  static void on_ping_timer(uv_timer_t* t);
  static void on_keepalive_timer(uv_timer_t* t);
  // A replica port (plain or TLS): accepts into accept_replica, refuses with
  // an error reply when out of descriptors.
  std::unique_ptr<Listener> make_replica_listener(const char* name, bool tls);
  void accept_replica(int fd, const sockaddr_storage& peer, bool tls);
 public:
  const TlsContext* tls_context() const { return tls_.get(); }
 private:
  // Bytes an online replica has not acknowledged yet (0 for the others).
  uint64_t lag_bytes(const ReplicaSession& s) const;
  void refuse(int fd, const std::string& ip, int port, const std::string& reply, const std::string& why,
              uint64_t& reason_counter);
  void notify_sessions();
  void append_own_ping();
  // start(): the lineage from the data directory (or a fresh one).
  bool open_store();
  // start() with a handover: everything checked, nothing touched; "" or why not.
  std::string check_handover(const Handover& h);
  // Then taken over: counters, sessions, the upstream connection.
  void take_over(const Handover& h);

  uv_loop_t* loop_;
  Config config_;
  uint64_t start_ms_;
  int64_t started_unix_;
  uint64_t live_restarts_ = 0;
  uint64_t live_restart_fallbacks_ = 0;
  bool handover_refused_ = false;
  std::string handover_error_;
  std::function<void(const std::string&)> notifier_;
  Counters counters_;

  backlog::LineageStore store_;
  bool own_pings_held_ = false;
  std::string superseded_by_;  // the replid a standby took this lineage over as

  std::unique_ptr<Standby> standby_;  // with --standby-of
  std::unique_ptr<LiveFeed> feed_;  // the upstream link and what it feeds into the store
  // A standby's feed of the active after the takeover: stopped, kept (a
  // snapshot commit of it may still be running in the thread pool).
  std::vector<std::unique_ptr<LiveFeed>> retired_feeds_;
  std::unique_ptr<Refresher> refresher_;
  std::unique_ptr<LiveRestart> live_restart_;
  uint64_t commands_at_snapshot_ = 0;
  int start_error_code_ = 1;  // the live link's command count at the snapshot's offset
  std::unique_ptr<StatusServer> status_;
  History history_;
  void sample_history();
  std::list<std::unique_ptr<ReplicaSession>> sessions_;
  uint64_t next_session_id_ = 1;

  std::unique_ptr<Listener> listener_;  // the replica port
  std::unique_ptr<Listener> tls_listener_;  // --tls-port
  std::unique_ptr<TlsContext> tls_;
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

// The bytes of the proxy's own PING in its stream (every 10 s); a standby
// mirrors the active's as these bytes.
inline constexpr std::string_view kOwnPing = "*1\r\n$4\r\nPING\r\n";

// A fresh random 40-hex replication ID.
std::string random_replid();
// This process's run_id (INFO server): one random ID for its lifetime, which
// a live restart carries over (set_process_run_id in the new image).
std::string process_run_id();
void set_process_run_id(const std::string& id);
// Milliseconds on a monotonic clock.
uint64_t now_ms();

}  // namespace psync::proxy
