// The upstream link: the proxy as a replica of the legacy master, with SYNC.
//
//   connecting ─▶ handshake (AUTH, REPLCONF listening-port, one reply at a time)
//       ─▶ waiting_payload (SYNC sent; "\n" keepalives) ─▶ transfer (RDB to a temp file)
//       ─▶ streaming (commands normalized into the log)
//   any failure ─▶ backoff (capped exponential) ─▶ connecting
//
// Every completed SYNC is a new lineage: its snapshot is committed (fsync,
// rename) off the loop, then the proxy switches to it.
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
  enum class State { kConnecting, kHandshake, kWaitingPayload, kTransfer, kStreaming, kBackoff };

  explicit Upstream(Proxy& proxy);
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  void start();
  // Closes the link for good (shutdown).
  void stop();

  State state() const { return state_; }
  static const char* state_name(State s);
  bool link_up() const { return state_ == State::kStreaming; }
  const std::string& last_error() const { return last_error_; }
  uint64_t sync_count() const { return sync_count_; }
  uint64_t rdb_bytes_received() const;
  std::optional<uint64_t> rdb_bytes_expected() const;
  uint64_t stream_bytes() const { return stream_.bytes_in(); }
  uint64_t commands() const { return stream_.commands(); }
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
  static void on_commit_work(uv_work_t* req);
  static void on_commit_done(uv_work_t* req, int status);

  void connect();
  void send(std::string bytes);
  void send_next_handshake_step();
  void handle_bytes(const char* data, size_t len);
  void handle_handshake_line(const std::string& line);
  // Logs one line, closes the link, schedules a retry.
  void fail(const std::string& why);
  void finish_transfer(std::string_view rest);
  void resume_after_commit();

  // PayloadSink
  void on_keepalive() override;
  void on_payload_start(std::optional<uint64_t> len) override;
  void on_payload_data(std::string_view chunk) override;
  void on_payload_end() override;
  // StreamSink
  void on_stream(std::string_view bytes, bool at_boundary) override;
  void on_upstream_ping() override;

  Proxy& proxy_;
  State state_ = State::kBackoff;
  std::string last_error_;
  uint64_t sync_count_ = 0;
  int attempts_ = 0;
  bool stopped_ = false;

  uv_tcp_t* tcp_ = nullptr;  // owned until its close callback
  uv_getaddrinfo_t resolve_{};
  bool resolving_ = false;
  uv_connect_t connect_req_{};
  uv_timer_t retry_timer_{};
  uv_timer_t watchdog_{};
  std::vector<char> read_buf_;
  uint64_t last_byte_ms_ = 0;
  uint64_t link_generation_ = 0;  // tells a stale callback from the current link's

  // Handshake: the commands still to send, one reply each.
  std::vector<std::string> handshake_;
  size_t handshake_step_ = 0;
  std::string line_;

  protocol::PayloadReader payload_;
  std::unique_ptr<backlog::SnapshotWriter> writer_;
  bool payload_failed_ = false;
  std::string write_error_;
  uint64_t last_progress_ms_ = 0;

  // Commit of a completed snapshot, off the loop.
  struct Commit;
  bool committing_ = false;
  std::string held_stream_;  // stream bytes that followed the RDB in the same read

  protocol::LegacyStream stream_;
  bool stream_failed_ = false;
};

}  // namespace psync::proxy
