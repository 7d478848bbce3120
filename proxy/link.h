// A replication link: one connection to a master, as a replica of it.
//
//   resolving ─▶ connecting ─▶ handshake (AUTH, INFO server, REPLCONF
//       listening-port, REPLCONF capa psync2; one reply at a time)
//       ─▶ waiting_payload (PSYNC or SYNC sent; "\n" keepalives)
//            ├─ +CONTINUE ───────────────────────────────▶ streaming
//            ├─ -ERR to PSYNC (auto mode) ─▶ SYNC on the same link
//            └─ payload ─▶ transfer (RDB to a temp file) ─▶ stored ─▶ streaming
//   any failure ─▶ backoff (capped exponential) ─▶ resolving
//
// The link knows nothing of the log or the lineage: it hands what the master
// sends to its consumer (a LinkConsumer) — the RDB as a SnapshotWriter, then
// normalized commands with the master offset each boundary ends at — and
// asks the consumer where to resume. The live feed (proxy/live_feed.h) and
// the snapshot refresher (proxy/refresher.h) are two consumers of this one
// class.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backlog/lineage_store.h"
#include "backlog/snapshot_store.h"
#include "protocol/legacy_stream.h"
#include "protocol/payload_reader.h"
#include "proxy/config.h"

namespace psync::proxy {

struct Counters;

struct LinkOptions {
  std::string name;  // in log lines: "upstream", "refresh"
  HostPort address;
  std::string masterauth;
  std::string masteruser;
  int listening_port = 0;  // sent as REPLCONF listening-port
  UpstreamMode mode = UpstreamMode::kAuto;
  double connect_timeout_s = 10;
  double read_timeout_s = 60;
  std::string dir;         // where the RDB is downloaded
  std::string rdb_tag;     // temp file name tag (two links download apart)
  bool retry = true;       // false: a failure ends the link (the consumer decides)
  Counters* counters = nullptr;  // net_input_bytes, when given
};

class LinkConsumer {
 public:
  virtual ~LinkConsumer() = default;
  // Where a PSYNC should resume: PSYNC <replid> <offset+1>. nullopt (or an
  // empty replid): PSYNC ? -1, or SYNC.
  virtual std::optional<backlog::UpstreamPosition> resume_point() = 0;
  // The whole RDB is in `rdb` (not yet fsynced). full_resync: the master's
  // replid and offset from +FULLRESYNC (nullopt after a SYNC). The link reads
  // nothing more until the consumer calls Link::start_streaming() (or drops
  // the link).
  virtual void on_rdb(std::unique_ptr<backlog::SnapshotWriter> rdb,
                      std::optional<backlog::UpstreamPosition> full_resync) = 0;
  // The master answered +CONTINUE: the stream goes on from resume_point();
  // replid is the master's replication ID now. Returns false to end the link
  // (after logging why).
  virtual bool on_continue(const std::string& replid, uint64_t offset) = 0;
  // Normalized stream bytes (see protocol::StreamSink). master_offset: the
  // master offset these bytes end at, meaningful when at_boundary. Returns
  // false to end the link (after logging why, e.g. a failed write).
  virtual bool on_stream(std::string_view bytes, bool at_boundary, uint64_t master_offset) = 0;
  // An upstream PING (or keepalive) that ends at master_offset: not stream
  // content, but part of the master's offsets. Returns false to end the link
  // (after logging why).
  virtual bool on_ping(uint64_t master_offset) = 0;
  // The master offset to ACK (PSYNC links only).
  virtual uint64_t ack_offset() = 0;
  // The link was lost (why, already logged); was_streaming: after the
  // payload. A retrying link connects again by itself. The consumer may
  // destroy the Link from here.
  virtual void on_lost(const std::string& why, bool was_streaming) = 0;
  // Writing the RDB to the data directory failed (the link fails next).
  virtual void on_storage_error(const std::string& what) = 0;
  // What the master sent cannot be resumed from: not RESP, or a master
  // without PSYNC. The consumer forgets its resume point.
  virtual void on_bad_stream() = 0;
};

class Link : private protocol::PayloadSink, private protocol::StreamSink {
 public:
  enum class State { kResolving, kConnecting, kHandshake, kWaitingPayload, kTransfer, kStored, kStreaming, kBackoff, kStopped };
  enum class Mode { kUnknown, kSync, kPsync };  // what the master agreed to

  Link(uv_loop_t* loop, LinkOptions options, LinkConsumer& consumer);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  void start();
  // Closes the link for good; no consumer call after it.
  void stop();
  // After on_rdb(): the RDB is stored; the stream follows, its position 0
  // being master offset master_base (the +FULLRESYNC offset; 0 for SYNC).
  void start_streaming(uint64_t master_base);
  // Ends the current connection with an error (retried if the link retries).
  void fail(const std::string& why);
  // Another consumer takes the link over as it is (a standby's own master
  // link becomes its live link at a takeover): every later call goes to it,
  // log lines say `name`, and a lost connection is retried from now on.
  // Not from inside a consumer call of this link.
  void rebind(LinkConsumer& consumer, const std::string& name);

  State state() const { return state_; }
  Mode mode() const { return mode_; }
  static const char* state_name(State s);
  static const char* mode_name(Mode m);
  const LinkOptions& options() const { return options_; }
  // redis_version from the master's INFO server ("" when not allowed), as
  // protocol::peer_text() gives it. Every peer string kept here is ASCII-safe.
  const std::string& master_version() const { return master_version_; }
  // What the peer's INFO server said of it at the last handshake, when it is
  // a psync-proxy (role "" otherwise).
  struct PeerInfo {
    std::string role;     // psync_proxy_role: active, standby, superseded
    std::string run_id;
    uint64_t offset = 0;  // psync_proxy_offset: its committed end
    uint64_t seen_ms = 0;  // when (0: never)
  };
  const PeerInfo& peer() const { return peer_; }
  uint64_t partial_resyncs() const { return partial_resyncs_; }
  bool link_up() const { return state_ == State::kStreaming; }
  const std::string& last_error() const { return last_error_; }
  uint64_t sync_count() const { return sync_count_; }
  uint64_t rdb_bytes_received() const;
  std::optional<uint64_t> rdb_bytes_expected() const;
  uint64_t stream_bytes() const { return stream_.bytes_in(); }
  uint64_t commands() const { return stream_.commands(); }
  // Since the link was made (monotonic, for /metrics).
  uint64_t total_bytes() const { return total_bytes_; }
  uint64_t total_commands() const { return commands_before_ + stream_.commands(); }
  // Seconds since the last byte from the master; -1 when never.
  double seconds_since_last_byte() const;

  // ----- Live restart (proxy/live_restart.h) -----
  // Stops reading at the next command boundary of the stream, with nothing
  // of the proxy's own (an ACK) half written: on_paused(tail) is called, from
  // here or from a later read, with the bytes read past that boundary (at
  // most one read, already seen by the normalizer: what they produced is
  // uncommitted, for the consumer to roll back). false when not streaming.
  using OnPaused = std::function<void(std::string tail)>;
  bool pause_at_boundary(OnPaused on_paused);
  // Pauses now if the stream is at a boundary (true when it did).
  bool try_pause_now();
  void cancel_pause();
  bool pausing() const { return static_cast<bool>(on_paused_); }
  // The connection's descriptor (-1 without one).
  int fd() const;
  // Goes on from the boundary a pause stopped at, in this image (the exec
  // failed) or in a new one (adopt): a fresh normalizer is fed `tail` first;
  // master_base is the master offset of the last committed byte.
  void resume_at_boundary(uint64_t master_base, std::string_view tail);
  struct Adopted {
    Mode mode = Mode::kSync;
    std::string master_version;
    uint64_t sync_count = 0;
    uint64_t partial_resyncs = 0;
    uint64_t total_bytes = 0;
    uint64_t total_commands = 0;
  };
  // The new image takes over a connection that was streaming (instead of
  // start()). false with error set when fd is not a usable socket.
  bool adopt(int fd, const Adopted& from, uint64_t master_base, std::string_view tail, std::string& error);
  Adopted adopted_stats() const;

 private:
  struct Anchor;
  struct Resolve;
  struct Connect;

  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void on_connected(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_closed(uv_handle_t* handle);
  static void on_retry_timer(uv_timer_t* t);
  static void on_watchdog(uv_timer_t* t);
  static void on_ack_timer(uv_timer_t* t);

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
  // false when the consumer refused it (the link failed).
  bool resume_stream(const std::string& continue_line);
  // A fresh normalizer for the stream that starts now (after a transfer or a +CONTINUE).
  void start_stream();
  void send_ack();  // REPLCONF ACK <consumer's offset>
  void finish_transfer(std::string_view rest);
  // After a feed of `fed` while a pause is wanted: pauses if a boundary was in it.
  void maybe_pause(std::string_view fed);
  void pause_now(std::string tail);
  void start_timers();

  // PayloadSink
  void on_keepalive() override;
  void on_status_line(std::string_view line) override;
  void on_payload_start(std::optional<uint64_t> len) override;
  void on_payload_data(std::string_view chunk) override;
  void on_payload_end() override;
  // StreamSink
  void on_stream(std::string_view bytes, bool at_boundary, uint64_t upstream_end) override;
  void on_upstream_ping(uint64_t upstream_end) override;

  uv_loop_t* loop_;
  LinkOptions options_;
  LinkConsumer* consumer_;
  const char* component_;
  std::shared_ptr<Anchor> anchor_;  // what in-flight requests reach the Link through
  State state_ = State::kBackoff;
  std::string last_error_;
  uint64_t sync_count_ = 0;
  int attempts_ = 0;
  bool stopped_ = false;
  bool started_ = false;

  uv_tcp_t* tcp_ = nullptr;  // owned until its close callback
  Resolve* resolving_ = nullptr;  // the one lookup in flight (maybe of an earlier attempt); freed by its callback
  uv_timer_t* retry_timer_ = nullptr;  // the timers are heap handles: the Link may go before their close callbacks
  uv_timer_t* watchdog_ = nullptr;
  uv_timer_t* ack_timer_ = nullptr;
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
  PeerInfo peer_;
  // Master offset of the byte before stream position 0 of the normalizer:
  // master offset = master_base_ + a position the normalizer reports.
  uint64_t master_base_ = 0;
  std::string pending_replid_;  // from +FULLRESYNC, handed over with the RDB
  uint64_t pending_offset_ = 0;
  uint64_t partial_resyncs_ = 0;
  bool getack_pending_ = false;

  protocol::PayloadReader payload_;
  std::unique_ptr<backlog::SnapshotWriter> writer_;
  bool payload_failed_ = false;
  std::string write_error_;
  uint64_t last_progress_ms_ = 0;
  uint64_t last_progress_bytes_ = 0;
  std::string held_stream_;  // stream bytes that followed the RDB in the same read

  protocol::LegacyStream stream_;
  uint64_t total_bytes_ = 0;
  uint64_t commands_before_ = 0;  // commands of earlier streams (stream_ counts the current one)
  bool stream_failed_ = false;   // the consumer refused bytes: the link ends after this read
  // Stream position (normalizer input) of the last command boundary handed
  // to the consumer: a pause stops there.
  uint64_t last_boundary_in_ = 0;
  OnPaused on_paused_;
};

}  // namespace psync::proxy
