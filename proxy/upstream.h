// The upstream link: the proxy as a replica of its master.
//
//   resolving ─▶ connecting ─▶ handshake (AUTH, INFO server, REPLCONF listening-port,
//       REPLCONF capa psync2; one reply at a time)
//       ─▶ waiting_payload (PSYNC or SYNC sent; "\n" keepalives)
//            ├─ +CONTINUE ───────────────────────────────▶ streaming
//            ├─ -ERR to PSYNC (auto mode) ─▶ SYNC on the same link
//            └─ payload ─▶ transfer (RDB to a temp file) ─▶ streaming
//   any failure ─▶ backoff (capped exponential) ─▶ connecting
//
// Every completed transfer is a new lineage: its snapshot is committed
// (fsync, rename) off the loop, then the proxy switches to it. A master that
// speaks PSYNC (2.8+) lets a lost link be resumed with +CONTINUE: the lineage
// goes on and the replicas see only a pause. SYNC-only masters (2.6 and
// older) cannot be resumed. ACKs go upstream only after PSYNC was accepted.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backlog/snapshot_store.h"
#include "protocol/legacy_stream.h"
#include "protocol/payload_reader.h"

namespace psync::proxy {

class Proxy;

class Upstream : private protocol::PayloadSink, private protocol::StreamSink {
 public:
  enum class State { kResolving, kConnecting, kHandshake, kWaitingPayload, kTransfer, kStreaming, kBackoff };

  explicit Upstream(Proxy& proxy);
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  void start();
  // Closes the link for good (shutdown).
  void stop();

  enum class Mode { kUnknown, kSync, kPsync };  // what the master agreed to

  State state() const { return state_; }
  Mode mode() const { return mode_; }
  static const char* mode_name(Mode m);
  // redis_version from the master's INFO server ("" when not allowed), as
  // protocol::peer_text() gives it. Every peer string kept here is ASCII-safe.
  const std::string& master_version() const { return master_version_; }
  // The master's replication ID (40 hex digits, or "": another is never
  // adopted) and the master offset of the last byte committed to the log
  // (PSYNC only): the store's resume point.
  const std::string& master_replid() const;
  uint64_t master_offset() const;
  uint64_t partial_resyncs() const { return partial_resyncs_; }
  static const char* state_name(State s);
  bool link_up() const { return state_ == State::kStreaming; }
  const std::string& last_error() const { return last_error_; }
  uint64_t sync_count() const { return sync_count_; }
  uint64_t rdb_bytes_received() const;
  std::optional<uint64_t> rdb_bytes_expected() const;
  uint64_t stream_bytes() const { return stream_.bytes_in(); }
  uint64_t commands() const { return stream_.commands(); }
  // Since the process started (monotonic, for /metrics).
  uint64_t total_bytes() const { return total_bytes_; }
  uint64_t total_commands() const { return commands_before_ + stream_.commands(); }
  // Seconds since the last byte from the upstream; -1 when never.
  double seconds_since_last_byte() const;

 private:
  // Libuv callbacks.
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void on_connected(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_closed(uv_handle_t* handle);
  static void on_retry_timer(uv_timer_t* t);
  static void on_watchdog(uv_timer_t* t);
  static void on_ack_timer(uv_timer_t* t);
  static void on_commit_work(uv_work_t* req);
  static void on_commit_done(uv_work_t* req, int status);

  void connect();
  // Starts this attempt's name lookup (none other may be in flight).
  void start_resolve();
  void send(std::string bytes);
  void send_next_handshake_step();
  void handle_bytes(const char* data, size_t len);
  // One handshake reply: a status/error/integer line, or a bulk's content.
  void handle_handshake_reply(char type, const std::string& body);
  void send_sync_request();
  // After the payload reader stopped: true to go on reading the same bytes.
  bool handle_payload_result(protocol::PayloadReader::Status st);
  void resume_stream(const std::string& continue_line);
  // A fresh normalizer for the stream that starts now (after a transfer or a +CONTINUE).
  void start_stream();
  void send_ack();  // REPLCONF ACK <master offset>
  // Logs one line, closes the link, schedules a retry.
  void fail(const std::string& why);
  void finish_transfer(std::string_view rest);
  void resume_after_commit();

  // PayloadSink
  void on_keepalive() override;
  void on_status_line(std::string_view line) override;
  void on_payload_start(std::optional<uint64_t> len) override;
  void on_payload_data(std::string_view chunk) override;
  void on_payload_end() override;
  // StreamSink
  void on_stream(std::string_view bytes, bool at_boundary, uint64_t upstream_end) override;
  void on_upstream_ping(uint64_t upstream_end) override;

  Proxy& proxy_;
  State state_ = State::kBackoff;
  std::string last_error_;
  uint64_t sync_count_ = 0;
  int attempts_ = 0;
  bool stopped_ = false;

  uv_tcp_t* tcp_ = nullptr;  // owned until its close callback
  struct Resolve;
  struct Connect;
  Resolve* resolving_ = nullptr;  // the one lookup in flight (maybe of an earlier attempt); freed by its callback
  uv_timer_t retry_timer_{};
  uv_timer_t watchdog_{};
  std::vector<char> read_buf_;
  uint64_t last_byte_ms_ = 0;
  uint64_t link_generation_ = 0;  // tells a stale callback from the current link's

  // Handshake: the commands still to send, one reply each.
  enum class Step { kAuth, kInfo, kReplconf };
  std::vector<std::pair<Step, std::string>> handshake_;
  size_t handshake_step_ = 0;
  std::string line_;
  int64_t bulk_left_ = -1;  // >= 0: reading a bulk reply's content (+CRLF)
  std::string bulk_;

  Mode mode_ = Mode::kUnknown;
  bool psync_sent_ = false;
  std::string master_version_;
  // Master offset of the byte before stream position 0 of the normalizer:
  // master offset = master_base_ + a position the normalizer reports. The
  // master replid and the resume offset live in the lineage store.
  uint64_t master_base_ = 0;
  std::string pending_replid_;    // from +FULLRESYNC, adopted once its RDB is stored
  uint64_t pending_offset_ = 0;
  uint64_t partial_resyncs_ = 0;
  uv_timer_t ack_timer_{};
  bool getack_pending_ = false;

  protocol::PayloadReader payload_;
  std::unique_ptr<backlog::SnapshotWriter> writer_;
  bool payload_failed_ = false;
  std::string write_error_;
  uint64_t last_progress_ms_ = 0;
  uint64_t last_progress_bytes_ = 0;

  // Commit of a completed snapshot, off the loop.
  struct Commit;
  bool committing_ = false;
  std::string held_stream_;  // stream bytes that followed the RDB in the same read

  protocol::LegacyStream stream_;
  uint64_t total_bytes_ = 0;
  uint64_t commands_before_ = 0;  // commands of earlier streams (stream_ counts the current one)
  bool stream_failed_ = false;
};

}  // namespace psync::proxy
