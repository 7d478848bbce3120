// One downstream connection: a replica (or a tool such as redis-cli) talking
// to the proxy as to its master.
//
//   handshake ──PSYNC/SYNC──▶ wait_snapshot (no snapshot yet; SYNC clients only)
//       │                        │ snapshot ready
//       ├──full resync──────────▶ send_bulk ──RDB sent──▶ online
//       └──partial resync─────────────────────────────▶ online
//
// Nothing of the stream is copied for a replica: it is a cursor into the
// shared log and the bytes go out with sendfile(2), from the snapshot file
// during send_bulk and from the log segments when online.
//
// Lifetime: close() stops the poll and closes its handle; the proxy deletes
// the session from that handle's close callback, never synchronously (see
// Proxy::session_closed). A session whose start() fails is never listed.
//
// Memory: a client's replies wait in out_ while it does not read them. Once
// more than kMaxPendingReplies wait, no further command is dispatched and no
// further byte is read (the rest stays in the kernel's socket buffer, as
// Redis leaves it in its query buffer); dispatching resumes as the client
// reads. So out_ holds at most the cap plus one reply, and the parser at most
// one read (16 KB) plus one incomplete request (RequestLimits::max_buffered),
// whatever the client sends.
//
// Fairness: one turn of the loop (one poll callback) dispatches at most
// kTurnCommands commands or kTurnReplyBytes of replies for a session; the
// rest waits for its next turn (the poll is armed for writing, which fires at
// once on a socket with room), as the byte budget of pump() does for sending.
// Without it a client pipelining INFO kept the loop on its replies for as
// long as its socket buffers took them (seconds under load): every replica,
// the upstream and /status waited behind it.
//
// Timeouts (--replica-timeout): an online replica that came with PSYNC sends
// REPLCONF ACK every second; one that sends no ACK and no other byte for the
// timeout is closed, as Redis does with repl-timeout. Clients that never ACK
// by design (they came with SYNC: Redis 2.6, redis-cli --replica) are judged
// by their socket alone, as Redis does not time them out at all: the proxy
// always has bytes in flight to them (its PINGs every 10 s, "\n" every second
// while they wait for a snapshot), and once bytes have stayed unacknowledged
// by the peer's kernel for the timeout (TCP_INFO: no ACK, not even to window
// probes) its host is gone and the session is closed. A client that is alive
// but does not read (stopped, or a 2.6 replica loading a large RDB) still
// acknowledges window probes and stays. TCP keepalive (set at accept) covers
// an idle connection. A replica in send_bulk whose socket takes no byte of the
// snapshot for the timeout is closed too: it pins the snapshot and the log on
// disk, and Redis replicas read the transfer without pause.
#pragma once

#include <uv.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backlog/lineage_store.h"
#include "backlog/snapshot_store.h"
#include "protocol/request_parser.h"
#include "proxy/admin_commands.h"

typedef struct ssl_st SSL;

namespace psync::proxy {

struct Config;
struct Counters;
struct SessionHandover;
class ReplicaSession;

// What a session needs of the proxy, and nothing more: the lineage it reads
// (the store: snapshot, replid, the committed log), the configuration and
// counters, and a few services. Proxy implements it.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual uv_loop_t* loop() const = 0;
  virtual const Config& config() const = 0;
  virtual Counters& counters() = 0;
  virtual const backlog::LineageStore& store() const = 0;
  // user: from AUTH <user> <pass>; nullopt for AUTH <pass>.
  virtual bool check_password(std::optional<std::string_view> user, std::string_view pass) const = 0;
  virtual std::string info(std::string_view section) const = 0;
  virtual std::string role_reply() const = 0;
  // BGSAVE: starts a snapshot refresh; "" or why not.
  virtual std::string start_refresh(const std::string& trigger) = 0;
  // Why SYNC and PSYNC are refused ("" when they are not): a proxy whose
  // lineage a standby took over (proxy/standby.h).
  virtual std::string replication_refused() const { return ""; }
  // The session's handle is closed: the host deletes it.
  virtual void session_closed(ReplicaSession* session) = 0;
  // Every session, in accept order (CLIENT LIST, WAIT).
  virtual const std::list<std::unique_ptr<ReplicaSession>>& sessions() const = 0;

  // ----- WAIT (proxy/admin_commands.h), kept here for every session -----
  // Replicas that ACK (online, came with PSYNC, acknowledged since) whose
  // acknowledged offset is at least target.
  int64_t replicas_acked(uint64_t target) const;
  // A replica's acknowledged offset grew: the clients blocked in WAIT that
  // now have their count are answered (one sort of the replicas' offsets,
  // then a binary search per blocked client).
  void replica_acked();
  void wait_started(ReplicaSession* session);
  void wait_ended(ReplicaSession* session);
  size_t clients_in_wait() const { return waiting_.size(); }

 private:
  std::vector<ReplicaSession*> waiting_;  // blocked in WAIT; removed when done or closed
};

class ReplicaSession {
 public:
  // kWaitSnapshot is shown as "wait_bgsave" (INFO, /status, metrics): no
  // BGSAVE happens, but that is the name Redis gives the state and the name
  // tools expect.
  enum class State { kHandshake, kWaitSnapshot, kSendBulk, kOnline };
  enum class SyncKind { kNone, kFull, kPartial };

  ReplicaSession(SessionHost& host, uint64_t id, int fd, std::string ip, int port);
  ~ReplicaSession();
  ReplicaSession(const ReplicaSession&) = delete;
  ReplicaSession& operator=(const ReplicaSession&) = delete;

  bool start();
  // A connection on the TLS port: the session owns ssl (proxy/tls.h) and
  // runs its handshake before anything else. Before start().
  void use_tls(SSL* ssl);
  bool tls() const { return ssl_ != nullptr; }
  // The kernel encrypts what this TLS session sends (SSL_sendfile).
  bool ktls_send() const { return ktls_send_; }
  // Closes the connection (idempotent). The proxy deletes the session once
  // its handle is closed.
  void close(const std::string& reason);

  // The log grew: an online replica that was idle sends the new bytes.
  void on_log_grew();
  // The first snapshot exists: a SYNC client that was waiting gets it.
  void on_snapshot_ready();
  // Once a second: keepalive "\n" to a client waiting for a snapshot, and
  // --replica-timeout (closes the session when it is past).
  void on_second(uint64_t now);

  uint64_t id() const { return id_; }
  uint64_t created_ms() const { return created_ms_; }
  State state() const { return state_; }
  SyncKind sync_kind() const { return sync_kind_; }
  bool closing() const { return closing_; }
  // Sent PSYNC or SYNC: a replica (waiting for a snapshot, receiving it, or online).
  bool past_handshake() const { return state_ != State::kHandshake; }
  const std::string& ip() const { return ip_; }
  int port() const { return port_; }
  int listening_port() const { return listening_port_; }
  std::string address() const;
  int64_t acked_offset() const { return acked_offset_; }
  // Seconds since the last REPLCONF ACK (or since it went online); -1: never.
  double seconds_since_ack() const;
  uint64_t cursor() const { return cursor_; }
  uint64_t bulk_sent() const { return bulk_sent_; }

  static const char* state_name(State s);
  static const char* sync_name(SyncKind k);

  // ----- As a client of the proxy (proxy/admin_commands.h) -----
  const std::string& name() const { return name_; }  // CLIENT SETNAME, HELLO SETNAME
  void set_name(std::string name) { name_ = std::move(name); }
  admin::ClientLine client_line() const;  // CLIENT LIST / INFO
  // AUTH [user] pass (user nullopt: the one-argument form): "" when
  // accepted, else the error reply.
  std::string authenticate(std::optional<std::string_view> user, std::string_view pass);
  // May run commands: authenticated, or no --requirepass.
  bool authenticated() const;
  // Counted by WAIT: online, came with PSYNC, sent an ACK since it is online.
  bool acks() const { return state_ == State::kOnline && via_psync_ && acked_since_online_ && !closing_; }
  // WAIT: no further command is read or run until finish_wait (a replica's
  // ACK, the timeout, or a live restart). timeout_ms 0: none. The socket is
  // watched for the peer's close only: a blocked client holds no more
  // memory than it did.
  void block_in_wait(int64_t numreplicas, uint64_t target, uint64_t timeout_ms);
  bool blocked() const { return blocked_; }
  int64_t wait_needed() const { return wait_needed_; }
  uint64_t wait_target() const { return wait_target_; }
  // Replies with count and goes on with the commands that followed.
  void finish_wait(int64_t count);

  // ----- Live restart (proxy/handover.h) -----
  // Whether the next image can go on with this connection: not one that is
  // closing or closes after its last reply, nor a client (not a replica) that
  // has let more than kMaxHandedOverBytes of replies and requests pile up:
  // those are left to close (the exec closes their descriptors), so that
  // the handover stays small whatever clients do.
  static constexpr size_t kMaxHandedOverBytes = 256 * 1024;
  bool can_hand_over() const {
    // A TLS session's state is in OpenSSL's memory: not handed over (the
    // replica reconnects and continues with PSYNC).
    return !closing_ && !close_after_flush_ && !ssl_ &&
           (out_.size() - out_pos_) + parser_.buffered() <= kMaxHandedOverBytes;
  }
  // Its whole state; the descriptor stays open (the exec keeps it).
  SessionHandover handover() const;
  // The next image: the session `from` describes, on its descriptor (owned
  // from here). bulk: the snapshot it is being sent (send_bulk), else null.
  // Started (polled) unless error is set; null with error set when it cannot.
  static std::unique_ptr<ReplicaSession> adopt(SessionHost& host, const SessionHandover& from,
                                               std::shared_ptr<backlog::Snapshot> bulk, std::string& error);

 private:
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_closed(uv_handle_t* handle);
  static void on_wait_timeout(uv_timer_t* timer);
  void handle_readable();
  // Dispatches the commands the parser holds while the replies waiting are
  // under kMaxPendingReplies; false once the session is closing.
  bool dispatch_buffered();
  // SYNC/PSYNC refused by the host: the error is queued, the session closes after it.
  bool refused_replication();
  // A new turn of the loop: a full dispatch budget.
  void begin_turn();
  bool output_full() const;
  void dispatch(std::vector<std::string>& args);
  void cmd_auth(const std::vector<std::string>& args);
  void cmd_replconf(const std::vector<std::string>& args);
  void cmd_psync(const std::vector<std::string>& args);
  void cmd_sync();
  void start_full_resync();
  void start_partial_resync(uint64_t offset);
  // Queues a reply; dropped once the client is a replica (a master never
  // answers its replicas, as in Redis).
  void reply(std::string_view bytes);
  void pump();
  // sendfile(2) of len bytes of in_fd from pos to the client.
  enum class Sent { kSome, kBlocked, kClosed };
  Sent send_file(int in_fd, uint64_t pos, size_t len, const char* what, size_t& sent);
  void update_poll();
  // A socket call failed with err: closes, counting a TCP timeout as a
  // --replica-timeout.
  void socket_failed(const std::string& what, int err);
  // Once a second for clients that never ACK: true once bytes have been in
  // flight for timeout_ms with no ACK from the peer's kernel (TCP_INFO).
  bool socket_peer_gone(uint64_t now, uint64_t timeout_ms);

  SessionHost& proxy_;
  const backlog::LineageStore& store_;  // what the session serves: read only
  uint64_t id_;
  int fd_;
  // TLS (null on the plain port).
  SSL* ssl_ = nullptr;
  bool tls_accepting_ = false;     // the handshake is not done
  bool tls_wants_write_ = false;   // the handshake (or a read) waits for the socket to take bytes
  bool ktls_send_ = false;
  bool tls_file_retry_ = false;    // the last SSL_write of a file chunk must be retried first
  std::unique_ptr<char[]> tls_chunk_;  // a file chunk for SSL_write (without kernel TLS)
  std::string tls_error_;          // OpenSSL's reason for the last failed call
  void tls_handshake();
  // read/write through TLS or not: -1 with errno EAGAIN when it would block.
  ssize_t io_read(char* buf, size_t len);
  ssize_t io_write(const char* buf, size_t len);
  // An SSL_read/SSL_write result as read/write give it (errno EPROTO: a TLS error, in tls_error_).
  ssize_t tls_result(int r, bool reading);
  // Decrypted bytes OpenSSL holds that no poll event will announce.
  bool tls_input_pending() const;
  std::string ip_;
  int port_;
  uint64_t created_ms_;
  uv_poll_t poll_{};
  bool poll_started_ = false;
  int poll_events_ = 0;
  bool closing_ = false;
  bool close_after_flush_ = false;

  protocol::RequestParser parser_;
  std::vector<std::string> args_;
  std::string out_;       // replies and headers not yet written
  size_t out_pos_ = 0;
  bool want_write_ = false;
  bool input_held_ = false;  // dispatching stopped: too many replies waiting, or the turn spent
  bool turn_spent_ = false;  // this turn's dispatch budget is used up (see Fairness above)
  size_t turn_commands_left_ = 0;
  size_t turn_reply_left_ = 0;

  State state_ = State::kHandshake;
  SyncKind sync_kind_ = SyncKind::kNone;
  bool authenticated_ = false;
  bool capa_psync2_ = false;
  bool rdb_only_ = false;
  bool via_psync_ = false;  // came with PSYNC: +FULLRESYNC line, ACKs expected
  int listening_port_ = 0;

  std::shared_ptr<backlog::Snapshot> bulk_;  // the snapshot being sent
  uint64_t bulk_sent_ = 0;
  uint64_t cursor_ = 0;       // next log offset to send
  int64_t acked_offset_ = 0;
  uint64_t last_ack_ms_ = 0;
  uint64_t last_input_ms_ = 0;     // last byte read from the client
  uint64_t last_progress_ms_ = 0;  // last byte the client's socket took from us
  uint64_t outstanding_since_ms_ = 0;  // first check that saw bytes unacknowledged (0: none)
  bool acked_since_online_ = false;    // a REPLCONF ACK came since it went online (WAIT counts it)

  // As a client (CLIENT, HELLO, WAIT).
  std::string name_;
  const char* last_cmd_ = "NULL";  // admin::command_label (static storage)
  bool blocked_ = false;           // in WAIT
  int64_t wait_needed_ = 0;
  uint64_t wait_target_ = 0;
  uv_timer_t wait_timer_{};        // WAIT's timeout; initialized at the first WAIT that blocks with one
  bool wait_timer_inited_ = false;
  int open_handles_ = 0;           // the poll and the timer: deleted once both are closed
};

// The rule of socket_peer_gone (pure, unit tested): bytes unacknowledged for
// outstanding_for_ms, the peer's last ACK since_last_ack_ms ago.
bool peer_vanished(uint64_t outstanding_for_ms, uint64_t since_last_ack_ms, uint64_t timeout_ms);

}  // namespace psync::proxy
