#include "proxy/replica_session.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "protocol/numbers.h"
#include "protocol/reply.h"
#include "protocol/text.h"
#include "proxy/handover.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/tls.h"
#include "proxy/proxy.h"

namespace psync::proxy {

using protocol::iequals;

namespace {
constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kSendChunk = 1 << 20;        // bytes per sendfile call
constexpr size_t kPumpBudget = 4 << 20;       // bytes per pump before yielding to others
constexpr size_t kMaxPendingReplies = 1 << 20;  // replies waiting: no more dispatching, no more reading
constexpr size_t kKeepOutBuffer = 64 * 1024;    // capacity kept once out_ is written
constexpr size_t kTurnCommands = 1024;         // commands dispatched per turn (see the header)
constexpr size_t kTurnReplyBytes = 64 * 1024;  // reply bytes produced per turn
const char* kComponent = "replica";
}  // namespace

const char* ReplicaSession::state_name(State s) {
  switch (s) {
    case State::kHandshake: return "handshake";
    case State::kWaitSnapshot: return "wait_bgsave";  // Redis's name (see the enum)
    case State::kSendBulk: return "send_bulk";
    case State::kOnline: return "online";
  }
  return "?";
}

const char* ReplicaSession::sync_name(SyncKind k) {
  switch (k) {
    case SyncKind::kNone: return "none";
    case SyncKind::kFull: return "full";
    case SyncKind::kPartial: return "partial";
  }
  return "?";
}

ReplicaSession::ReplicaSession(SessionHost& host, uint64_t id, int fd, std::string ip, int port)
    : proxy_(host),
      store_(host.store()), id_(id), fd_(fd), ip_(std::move(ip)), port_(port), created_ms_(now_ms()) {}

ReplicaSession::~ReplicaSession() {
  if (ssl_) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

void ReplicaSession::use_tls(SSL* ssl) {
  ssl_ = ssl;
  tls_accepting_ = true;
}

void ReplicaSession::tls_handshake() {
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    tls_accepting_ = false;
    tls_wants_write_ = false;
#ifdef BIO_get_ktls_send
    ktls_send_ = BIO_get_ktls_send(SSL_get_wbio(ssl_)) != 0;
#endif
    LOG_DEBUG(kComponent, "client %s: TLS %s (%s)%s", address().c_str(), SSL_get_version(ssl_),
              SSL_get_cipher_name(ssl_), ktls_send_ ? ", kernel TLS for sending" : "");
    update_poll();
    return;
  }
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    tls_wants_write_ = e == SSL_ERROR_WANT_WRITE;
    update_poll();
    return;
  }
  std::string why = e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
                        ? std::string(errno ? strerror(errno) : "the peer closed the connection")
                        : TlsContext::errors();
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) why += " (certificate: " + std::string(X509_verify_cert_error_string(verify)) + ")";
  proxy_.counters().tls_handshake_failures++;
  LOG_WARN(kComponent, "TLS handshake with %s failed: %s", address().c_str(), why.c_str());
  close("TLS handshake failed: " + why);
}

ssize_t ReplicaSession::tls_result(int r, bool reading) {
  if (r > 0) return r;
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    if (errno != 0) return -1;  // errno says why
    if (reading) return 0;      // the peer closed without close_notify
  }
  if (reading && e == SSL_ERROR_ZERO_RETURN) return 0;
  tls_error_ = TlsContext::errors();
  errno = EPROTO;
  return -1;
}

ssize_t ReplicaSession::io_read(char* buf, size_t len) {
  if (!ssl_) return ::read(fd_, buf, len);
  ERR_clear_error();
  errno = 0;
  return tls_result(SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT32_MAX))), true);
}

ssize_t ReplicaSession::io_write(const char* buf, size_t len) {
  if (!ssl_) return ::write(fd_, buf, len);
  ERR_clear_error();
  errno = 0;
  return tls_result(SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT32_MAX))), false);
}

bool ReplicaSession::tls_input_pending() const {
  return ssl_ && !tls_accepting_ && SSL_pending(ssl_) > 0 && !output_full() && !input_held_ && !close_after_flush_ &&
         !blocked_;
}

std::string ReplicaSession::address() const {
  if (ip_.find(':') != std::string::npos) return "[" + ip_ + "]:" + std::to_string(port_);
  return ip_ + ":" + std::to_string(port_);
}

double ReplicaSession::seconds_since_ack() const {
  if (last_ack_ms_ == 0) return -1;
  return static_cast<double>(now_ms() - last_ack_ms_) / 1000.0;
}

bool ReplicaSession::start() {
  if (uv_poll_init_socket(proxy_.loop(), &poll_, fd_) != 0) return false;
  poll_.data = this;
  poll_started_ = true;
  open_handles_ = 1;
  last_input_ms_ = created_ms_;
  update_poll();
  return true;
}

SessionHandover ReplicaSession::handover() const {
  SessionHandover h;
  h.fd = fd_;
  h.id = id_;
  h.ip = ip_;
  h.port = port_;
  h.age_ms = now_ms() - created_ms_;
  h.state = state_name(state_);
  h.sync_kind = sync_name(sync_kind_);
  h.authenticated = authenticated_;
  h.capa_psync2 = capa_psync2_;
  h.rdb_only = rdb_only_;
  h.via_psync = via_psync_;
  h.listening_port = listening_port_;
  h.name = name_;
  h.cursor = cursor_;
  h.acked_offset = acked_offset_;
  h.bulk_sent = bulk_sent_;
  if (bulk_) {
    h.has_bulk = true;
    h.bulk = SnapshotHandover{bulk_->fd(),    bulk_->path(),   bulk_->size(),        bulk_->offset(),
                              bulk_->replid(), bulk_->prefix(), bulk_->created_unix()};
  }
  h.out = out_.substr(out_pos_);
  // A WAIT in progress ends here, with the count at this moment, as its
  // timeout would end it; the next image runs what followed it.
  if (blocked_) h.out += protocol::integer_reply(proxy_.replicas_acked(wait_target_));
  h.in = std::string(parser_.pending());
  return h;
}

std::unique_ptr<ReplicaSession> ReplicaSession::adopt(SessionHost& host, const SessionHandover& from,
                                                      std::shared_ptr<backlog::Snapshot> bulk, std::string& error) {
  auto s = std::make_unique<ReplicaSession>(host, from.id, from.fd, from.ip, from.port);
  const uint64_t now = now_ms();
  s->created_ms_ = now > from.age_ms ? now - from.age_ms : 0;
  for (State st : {State::kHandshake, State::kWaitSnapshot, State::kSendBulk, State::kOnline}) {
    if (from.state == state_name(st)) s->state_ = st;
  }
  for (SyncKind k : {SyncKind::kNone, SyncKind::kFull, SyncKind::kPartial}) {
    if (from.sync_kind == sync_name(k)) s->sync_kind_ = k;
  }
  s->authenticated_ = from.authenticated;
  s->capa_psync2_ = from.capa_psync2;
  s->rdb_only_ = from.rdb_only;
  s->via_psync_ = from.via_psync;
  s->listening_port_ = from.listening_port;
  s->name_ = from.name;
  s->cursor_ = from.cursor;
  s->acked_offset_ = from.acked_offset;
  s->bulk_sent_ = from.bulk_sent;
  s->bulk_ = std::move(bulk);
  s->out_ = from.out;
  s->parser_.feed(from.in);
  // Timeouts count afresh: the replica's ACKs waited in its socket meanwhile.
  s->last_ack_ms_ = now;
  s->last_progress_ms_ = now;
  if (s->state_ == State::kSendBulk && (!s->bulk_ || s->bulk_sent_ > s->bulk_->size())) {
    error = "its snapshot transfer cannot be continued";
    s->fd_ = -1;  // not owned: the caller closes what it was handed
    return nullptr;
  }
  if (!s->start()) {
    error = "cannot watch its socket";
    s->fd_ = -1;
    return nullptr;
  }
  // Whatever waited (replies, a command received whole) goes on now.
  s->want_write_ = true;
  s->begin_turn();
  if (!s->dispatch_buffered()) return s;
  s->pump();
  return s;
}

void ReplicaSession::close(const std::string& reason) {
  if (closing_) return;
  closing_ = true;
  if (state_ != State::kHandshake) {
    LOG_INFO(kComponent, "replica %s (listening port %d) disconnected: %s", address().c_str(),
             listening_port_, reason.c_str());
  } else {
    LOG_DEBUG(kComponent, "client %s disconnected: %s", address().c_str(), reason.c_str());
  }
  bulk_.reset();
  if (ssl_ && !tls_accepting_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify, if the socket takes it; never waited for
    ERR_clear_error();
  }
  if (blocked_) {
    blocked_ = false;
    proxy_.wait_ended(this);
  }
  // Only a started session is listed by the proxy; deletion always comes
  // from the close callback (see Proxy::session_closed), once every handle
  // of the session is closed.
  if (!poll_started_) return;
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), on_closed);
  if (wait_timer_inited_) {
    ++open_handles_;
    uv_timer_stop(&wait_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&wait_timer_), on_closed);
  }
}

bool ReplicaSession::socket_peer_gone(uint64_t now, uint64_t timeout_ms) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
  // Bytes in flight (or window probes): the peer's kernel should be acknowledging.
  bool outstanding = info.tcpi_unacked > 0 || info.tcpi_probes > 0;
  if (!outstanding) {
    outstanding_since_ms_ = 0;
    return false;
  }
  if (outstanding_since_ms_ == 0) outstanding_since_ms_ = now;
  return peer_vanished(now - outstanding_since_ms_, info.tcpi_last_ack_recv, timeout_ms);
}

bool peer_vanished(uint64_t outstanding_for_ms, uint64_t since_last_ack_ms, uint64_t timeout_ms) {
  // A live peer acknowledges data in flight at once, and answers window probes
  // while its window is closed (a process stopped or busy loading an RDB): its
  // last ACK stays recent. Only a vanished host lets both grow past the timeout.
  return outstanding_for_ms >= timeout_ms && since_last_ack_ms >= timeout_ms;
}

void ReplicaSession::socket_failed(const std::string& what, int err) {
  if (err == ETIMEDOUT) {
    // Keepalive probes unanswered: the peer's host is gone.
    proxy_.counters().closed_replica_timeouts++;
    close(what + ": " + strerror(err) + " (no TCP acknowledgement within --replica-timeout " +
          std::to_string(static_cast<int64_t>(proxy_.config().replica_timeout_s)) + " s)");
    return;
  }
  close(what + ": " + strerror(err));
}

void ReplicaSession::on_closed(uv_handle_t* handle) {
  auto* self = static_cast<ReplicaSession*>(handle->data);
  if (--self->open_handles_ > 0) return;
  self->proxy_.session_closed(self);  // deletes self
}

void ReplicaSession::on_poll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<ReplicaSession*>(handle->data);
  if (self->closing_) return;
  self->begin_turn();
  if (status < 0) {
    // libuv reports any socket error as EBADF; the socket knows the real one.
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      self->socket_failed("socket error", err);
    } else {
      self->close(std::string("socket error: ") + uv_strerror(status));
    }
    return;
  }
  if (self->blocked_ && (events & UV_DISCONNECT)) {
    self->close("connection closed by peer while blocked in WAIT");
    return;
  }
  if (self->tls_accepting_) {
    self->tls_handshake();
    if (self->closing_ || self->tls_accepting_) return;
  }
  if (events & UV_WRITABLE) self->pump();
  if (!self->closing_ && ((events & (UV_READABLE | UV_DISCONNECT)) || self->tls_input_pending())) {
    self->handle_readable();
  }
}

bool ReplicaSession::output_full() const { return out_.size() - out_pos_ >= kMaxPendingReplies; }

void ReplicaSession::update_poll() {
  if (closing_ || !poll_started_) return;
  int events = 0;
  if (tls_accepting_) {
    events = UV_READABLE | (tls_wants_write_ ? UV_WRITABLE : 0);
    if (events != poll_events_) {
      poll_events_ = events;
      uv_poll_start(&poll_, events, on_poll);
    }
    return;
  }
  // Input is read only while commands may be dispatched (see the header);
  // a client blocked in WAIT is watched for its close only.
  if (!output_full() && !input_held_ && !close_after_flush_ && !blocked_) events |= UV_READABLE;
  if (blocked_) events |= UV_DISCONNECT;
  if (want_write_) events |= UV_WRITABLE;
  if (events == poll_events_) return;
  poll_events_ = events;
  if (events == 0) {
    uv_poll_stop(&poll_);
  } else {
    uv_poll_start(&poll_, events, on_poll);
  }
}

void ReplicaSession::handle_readable() {
  char buf[kReadChunk];
  for (int round = 0; round < 4 && !output_full() && !input_held_ && !close_after_flush_ && !blocked_; ++round) {
    ssize_t n = io_read(buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EPROTO && ssl_) {
        close("TLS error: " + tls_error_);
        return;
      }
      socket_failed("read error", errno);
      return;
    }
    if (n == 0) {
      close("connection closed by peer");
      return;
    }
    last_input_ms_ = now_ms();
    proxy_.counters().net_input_bytes += static_cast<uint64_t>(n);
    parser_.feed(std::string_view(buf, static_cast<size_t>(n)));
    if (!dispatch_buffered()) return;
    // (TLS: a read gives one record at most; SSL_pending says whether more is decrypted.)
    if (static_cast<size_t>(n) < sizeof buf && !(ssl_ && SSL_pending(ssl_) > 0)) break;
  }
  pump();
}

void ReplicaSession::begin_turn() {
  turn_commands_left_ = kTurnCommands;
  turn_reply_left_ = kTurnReplyBytes;
}

bool ReplicaSession::dispatch_buffered() {
  input_held_ = false;
  turn_spent_ = false;
  while (!close_after_flush_ && !blocked_) {
    if (output_full()) {
      // The rest waits in the parser (and the socket) until the client reads.
      input_held_ = true;
      return true;
    }
    if (turn_commands_left_ == 0 || turn_reply_left_ == 0) {
      // The rest waits for this session's next turn (pump() arms the poll).
      input_held_ = true;
      turn_spent_ = true;
      return true;
    }
    auto r = parser_.next(args_);
    if (r == protocol::RequestParser::Result::kNeedMore) return true;
    if (r == protocol::RequestParser::Result::kError) {
      LOG_WARN(kComponent, "client %s sent bad input: %s", address().c_str(), parser_.error().c_str());
      proxy_.counters().closed_protocol_errors++;
      // Redis answers a protocol error and closes once it is written.
      if (state_ == State::kHandshake) out_ += protocol::error_reply("ERR " + parser_.error());
      close_after_flush_ = true;
      return true;
    }
    proxy_.counters().commands_processed++;
    const size_t out_before = out_.size();
    dispatch(args_);
    if (closing_) return false;
    --turn_commands_left_;
    const size_t produced = out_.size() > out_before ? out_.size() - out_before : 0;
    turn_reply_left_ -= std::min(turn_reply_left_, produced);
  }
  return true;  // QUIT or a protocol error (nothing after it is dispatched, as in Redis), or WAIT blocked
}

void ReplicaSession::reply(std::string_view bytes) {
  if (state_ != State::kHandshake) return;
  out_.append(bytes);
}

void ReplicaSession::dispatch(std::vector<std::string>& args) {
  if (args.empty()) return;
  const std::string& cmd = args[0];
  last_cmd_ = admin::command_label(args);
  if (iequals(cmd, "QUIT")) {
    reply(protocol::simple_string("OK"));
    close_after_flush_ = true;
    return;
  }
  if (iequals(cmd, "AUTH")) {
    cmd_auth(args);
    return;
  }
  if (iequals(cmd, "HELLO")) {  // may carry AUTH: before the NOAUTH check, as in Redis
    reply(admin::cmd_hello(*this, args));
    return;
  }
  if (!authenticated()) {
    reply(protocol::error_reply("NOAUTH Authentication required."));
    return;
  }
  if (iequals(cmd, "PING")) {
    if (args.size() > 2) {
      reply(protocol::error_reply("ERR wrong number of arguments for 'ping' command"));
    } else if (args.size() == 2) {
      reply(protocol::bulk_string(args[1]));
    } else {
      reply(protocol::simple_string("PONG"));
    }
  } else if (iequals(cmd, "REPLCONF")) {
    cmd_replconf(args);
  } else if (iequals(cmd, "PSYNC")) {
    cmd_psync(args);
  } else if (iequals(cmd, "SYNC")) {
    cmd_sync();
  } else if (iequals(cmd, "INFO")) {
    reply(protocol::bulk_string(proxy_.info(args.size() > 1 ? args[1] : "")));
  } else if (iequals(cmd, "BGSAVE")) {
    // A fresh snapshot of the master, within the lineage (proxy/refresher.h).
    std::string why_not = proxy_.start_refresh("BGSAVE from " + address());
    reply(why_not.empty() ? protocol::simple_string("Background saving started")
                          : protocol::error_reply("ERR " + why_not));
  } else if (iequals(cmd, "ROLE")) {
    reply(proxy_.role_reply());
  } else if (iequals(cmd, "WAIT")) {
    reply(admin::cmd_wait(*this, proxy_, args));  // "" while blocked
  } else if (iequals(cmd, "CLIENT")) {
    reply(admin::cmd_client(*this, proxy_, args));
  } else if (iequals(cmd, "CONFIG")) {
    reply(admin::cmd_config(proxy_, args));
  } else if (iequals(cmd, "COMMAND")) {
    reply(admin::cmd_command(args));
  } else if (iequals(cmd, "LATENCY")) {
    reply(admin::cmd_latency(args));
  } else if (iequals(cmd, "SLOWLOG")) {
    reply(admin::cmd_slowlog(args));
  } else if (iequals(cmd, "TIME")) {
    reply(admin::cmd_time(args));
  } else if (iequals(cmd, "ECHO")) {
    reply(admin::cmd_echo(args));
  } else {
    reply(admin::unknown_command_reply(cmd));  // the peer's bytes, ASCII-safe (text.h)
  }
}

bool ReplicaSession::authenticated() const { return authenticated_ || proxy_.config().requirepass.empty(); }

std::string ReplicaSession::authenticate(std::optional<std::string_view> user, std::string_view pass) {
  const auto wrongpass = protocol::error_reply("WRONGPASS invalid username-password pair or user is disabled.");
  if (proxy_.config().requirepass.empty()) {
    // As Redis's default user with no password: any password is accepted for it.
    if (!user) {
      return protocol::error_reply(
          "ERR AUTH <password> called without any password configured for the default user. "
          "Are you sure your configuration is correct?");
    }
    if (*user != proxy_.config().requireuser) return wrongpass;
    authenticated_ = true;
    return "";
  }
  if (proxy_.check_password(user, pass)) {
    authenticated_ = true;
    return "";
  }
  proxy_.counters().auth_failures++;
  LOG_WARN(kComponent, "client %s: AUTH failed", address().c_str());
  return wrongpass;
}

admin::ClientLine ReplicaSession::client_line() const {
  admin::ClientLine c;
  const uint64_t now = now_ms();
  c.id = id_;
  c.addr = address();
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  std::string lip = "?";
  int lport = 0;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) address_parts(ss, lip, lport);
  c.laddr = (lip.find(':') != std::string::npos ? "[" + lip + "]" : lip) + ":" + std::to_string(lport);
  c.fd = fd_;
  c.name = name_;
  c.age_s = (now - std::min(now, created_ms_)) / 1000;
  const uint64_t last = std::max({created_ms_, last_input_ms_, last_progress_ms_});
  c.idle_s = (now - std::min(now, last)) / 1000;
  if (past_handshake()) c.flags += 'S';
  if (blocked_) c.flags += 'b';
  if (close_after_flush_) c.flags += 'c';
  if (c.flags.empty()) c.flags = "N";
  c.qbuf = parser_.buffered();
  c.omem = out_.size() - out_pos_;
  c.tot_mem = sizeof(*this) + out_.capacity() + parser_.buffered() + name_.capacity();
  if (poll_events_ & UV_READABLE) c.events += 'r';
  if (poll_events_ & UV_WRITABLE) c.events += 'w';
  c.cmd = last_cmd_;
  c.user = proxy_.config().requireuser;
  return c;
}

void ReplicaSession::block_in_wait(int64_t numreplicas, uint64_t target, uint64_t timeout_ms) {
  blocked_ = true;
  wait_needed_ = numreplicas;
  wait_target_ = target;
  proxy_.wait_started(this);
  if (timeout_ms > 0) {
    if (!wait_timer_inited_) {
      uv_timer_init(proxy_.loop(), &wait_timer_);
      wait_timer_.data = this;
      wait_timer_inited_ = true;
    }
    uv_timer_start(&wait_timer_, on_wait_timeout, timeout_ms, 0);
  }
  // The caller (dispatch_buffered) stops at once; the poll changes in pump().
}

void ReplicaSession::on_wait_timeout(uv_timer_t* timer) {
  auto* self = static_cast<ReplicaSession*>(timer->data);
  if (self->closing_ || !self->blocked_) return;
  self->finish_wait(self->proxy_.replicas_acked(self->wait_target_));
}

void ReplicaSession::finish_wait(int64_t count) {
  if (!blocked_ || closing_) return;
  blocked_ = false;
  if (wait_timer_inited_) uv_timer_stop(&wait_timer_);
  proxy_.wait_ended(this);
  reply(protocol::integer_reply(count));
  // The commands the client pipelined after WAIT go on now.
  begin_turn();
  if (!dispatch_buffered()) return;
  pump();
}

void ReplicaSession::cmd_auth(const std::vector<std::string>& args) {
  if (args.size() < 2 || args.size() > 3) {
    reply(protocol::error_reply("ERR wrong number of arguments for 'auth' command"));
    return;
  }
  std::optional<std::string_view> user;
  if (args.size() == 3) user = args[1];
  std::string error = authenticate(user, args.back());
  reply(error.empty() ? protocol::simple_string("OK") : error);
}

void ReplicaSession::cmd_replconf(const std::vector<std::string>& args) {
  if (args.size() % 2 == 0) {
    reply(protocol::error_reply("ERR syntax error"));
    return;
  }
  for (size_t i = 1; i + 1 < args.size(); i += 2) {
    const std::string& opt = args[i];
    const std::string& val = args[i + 1];
    if (iequals(opt, "listening-port")) {
      auto p = protocol::parse_i64(val);
      if (!p || *p < 0 || *p > 65535) {
        reply(protocol::error_reply("ERR value is out of range"));
        return;
      }
      listening_port_ = static_cast<int>(*p);
    } else if (iequals(opt, "capa")) {
      // "eof" is ignored: snapshots always go out as $<len> (see PROTOCOL.md).
      if (iequals(val, "psync2")) capa_psync2_ = true;
    } else if (iequals(opt, "ack")) {
      // REPLCONF ACK <offset> [FACK <aofoffset>]: never answered.
      auto off = protocol::parse_i64(val);
      if (off && state_ == State::kOnline) {
        const bool grew = *off > acked_offset_ || !acked_since_online_;
        if (*off > acked_offset_) acked_offset_ = *off;
        last_ack_ms_ = now_ms();
        acked_since_online_ = true;
        if (grew && via_psync_ && proxy_.clients_in_wait() > 0) proxy_.replica_acked();
      }
      return;
    } else if (iequals(opt, "getack")) {
      return;  // only a master sends it
    } else if (iequals(opt, "rdb-only")) {
      auto v = protocol::parse_i64(val);
      if (!v || (*v != 0 && *v != 1)) {
        reply(protocol::error_reply("ERR rdb-only value must be 0 or 1"));
        return;
      }
      rdb_only_ = *v == 1;
    }
    // Other options (ip-address, rdb-filter-only ...) are accepted and ignored.
  }
  reply(protocol::simple_string("OK"));
}

bool ReplicaSession::refused_replication() {
  const std::string why = proxy_.replication_refused();
  if (why.empty()) return false;
  reply(protocol::error_reply("ERR " + why));
  close_after_flush_ = true;
  return true;
}

void ReplicaSession::cmd_psync(const std::vector<std::string>& args) {
  if (past_handshake()) return;  // already a replica: ignored, as Redis does
  if (refused_replication()) return;
  if (args.size() != 3) {
    reply(protocol::error_reply("ERR wrong number of arguments for 'psync' command"));
    return;
  }
  if (!store_.snapshot()) {
    // Redis 4.0+ retries shortly; 2.8-3.2 fall back to SYNC and are held.
    reply(protocol::error_reply(
        "NOMASTERLINK Can't SYNC while not connected with my master (psync-proxy has no "
        "snapshot of its upstream yet)"));
    return;
  }
  via_psync_ = true;
  const std::string& want_id = args[1];
  auto offset = protocol::parse_i64(args[2]);
  if (want_id != "?" && offset && *offset >= 0 &&
      store_.can_continue(want_id, static_cast<uint64_t>(*offset))) {
    start_partial_resync(static_cast<uint64_t>(*offset));
    return;
  }
  if (want_id != "?") {
    proxy_.counters().sync_partial_err++;
    if (want_id != store_.replid()) {
      LOG_INFO(kComponent,
               "replica %s asked for a partial resync of replid %s, which is not this lineage's "
               "(%s): full resync",
               address().c_str(), protocol::peer_text(want_id, 64).c_str(), store_.replid().c_str());
    } else {
      LOG_INFO(kComponent,
               "replica %s asked for a partial resync from offset %s, outside the retained log "
               "(%llu-%llu): full resync",
               address().c_str(), protocol::peer_text(args[2], 32).c_str(),
               static_cast<unsigned long long>(store_.psync_floor()),
               static_cast<unsigned long long>(store_.committed_end() + 1));
    }
  }
  start_full_resync();
}

void ReplicaSession::cmd_sync() {
  if (!past_handshake() && refused_replication()) return;
  if (past_handshake()) return;
  if (!store_.snapshot()) {
    LOG_INFO(kComponent, "client %s sent SYNC before the first snapshot: held until it exists",
             address().c_str());
    state_ = State::kWaitSnapshot;
    sync_kind_ = SyncKind::kFull;
    return;
  }
  start_full_resync();
}

void ReplicaSession::start_full_resync() {
  const auto& snap = store_.snapshot();
  char header[128];
  int n = 0;
  if (via_psync_) {
    // The replica's offset after the RDB and the snapshot's prefix (SELECT
    // <db at S> for a refreshed snapshot) is S: the log follows from S+1.
    n = snprintf(header, sizeof header, "+FULLRESYNC %s %llu\r\n", store_.replid().c_str(),
                 static_cast<unsigned long long>(snap->fullresync_offset()));
  }
  snprintf(header + n, sizeof header - static_cast<size_t>(n), "$%llu\r\n",
           static_cast<unsigned long long>(snap->size()));
  out_ += header;  // written directly: the client is a replica from here on
  bulk_ = snap;
  bulk_sent_ = 0;
  last_progress_ms_ = now_ms();
  cursor_ = snap->offset() + 1;
  state_ = State::kSendBulk;
  sync_kind_ = SyncKind::kFull;
  proxy_.counters().sync_full++;
  LOG_INFO(kComponent, "replica %s (listening port %d) full resync: snapshot of %s at offset %llu%s",
           address().c_str(), listening_port_, human_bytes(static_cast<double>(snap->size())).c_str(),
           static_cast<unsigned long long>(snap->offset()), rdb_only_ ? " (rdb only)" : "");
  // The caller pumps (handle_readable, on_snapshot_ready).
}

void ReplicaSession::start_partial_resync(uint64_t offset) {
  std::string line = capa_psync2_ ? "+CONTINUE " + store_.replid() + "\r\n" : "+CONTINUE\r\n";
  out_ += line;
  cursor_ = offset;
  state_ = State::kOnline;
  sync_kind_ = SyncKind::kPartial;
  acked_offset_ = static_cast<int64_t>(offset) - 1;
  last_ack_ms_ = now_ms();
  proxy_.counters().sync_partial_ok++;
  uint64_t behind = store_.committed_end() + 1 - offset;
  LOG_INFO(kComponent, "replica %s (listening port %d) partial resync from offset %llu (%s behind)",
           address().c_str(), listening_port_, static_cast<unsigned long long>(offset),
           human_bytes(static_cast<double>(behind)).c_str());
  // The caller (handle_readable) pumps.
}

void ReplicaSession::on_log_grew() {
  if (closing_ || state_ != State::kOnline || want_write_) return;
  pump();
}

void ReplicaSession::on_snapshot_ready() {
  if (closing_ || state_ != State::kWaitSnapshot) return;
  start_full_resync();
  pump();
}

void ReplicaSession::on_second(uint64_t now) {
  if (closing_) return;
  const double timeout_s = proxy_.config().replica_timeout_s;
  const auto timeout_ms = static_cast<uint64_t>(timeout_s * 1000);
  if (state_ == State::kOnline && via_psync_) {
    uint64_t last = std::max(last_ack_ms_, last_input_ms_);
    if (now - last > timeout_ms) {
      proxy_.counters().closed_replica_timeouts++;
      char why[160];
      snprintf(why, sizeof why, "no REPLCONF ACK (nor any other byte) for %.1f s (--replica-timeout %g)",
               static_cast<double>(now - last) / 1000.0, timeout_s);
      close(why);
    }
    return;
  }
  if (state_ == State::kSendBulk && want_write_ && now - last_progress_ms_ > timeout_ms) {
    proxy_.counters().closed_replica_timeouts++;
    char why[192];
    snprintf(why, sizeof why,
             "took no byte of the snapshot for %.1f s (--replica-timeout %g; %llu of %llu bytes sent)",
             static_cast<double>(now - last_progress_ms_) / 1000.0, timeout_s,
             static_cast<unsigned long long>(bulk_sent_), static_cast<unsigned long long>(bulk_->size()));
    close(why);
    return;
  }
  if (!via_psync_ && past_handshake() && socket_peer_gone(now, timeout_ms)) {
    proxy_.counters().closed_replica_timeouts++;
    char why[160];
    snprintf(why, sizeof why,
             "its host acknowledged no byte for %.1f s (--replica-timeout %g; a SYNC client, judged by "
             "its socket)",
             static_cast<double>(now - outstanding_since_ms_) / 1000.0, timeout_s);
    close(why);
    return;
  }
  if (state_ == State::kWaitSnapshot) {
    out_ += "\n";  // keepalive while the client waits for the snapshot
    pump();
  }
}

ReplicaSession::Sent ReplicaSession::send_file(int in_fd, uint64_t pos, size_t len, const char* what,
                                               size_t& sent) {
  for (;;) {
    off_t off = static_cast<off_t>(pos);
    ssize_t n = 0;
    if (!ssl_) {
      n = ::sendfile(fd_, in_fd, &off, len);
    } else if (ktls_send_) {
      ERR_clear_error();
      const ossl_ssize_t r = SSL_sendfile(ssl_, in_fd, off, len, 0);
      if (r > 0) {
        n = static_cast<ssize_t>(r);
      } else {
        const int e = SSL_get_error(ssl_, static_cast<int>(r));
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return Sent::kBlocked;
        tls_error_ = TlsContext::errors();
        close(std::string("sending ") + what + " failed (kernel TLS): " + tls_error_);
        return Sent::kClosed;
      }
    } else {
      // Without kernel TLS: a bounded chunk read, encrypted by OpenSSL. A
      // retried write reads the same bytes again (the file does not change
      // where it was read).
      if (!tls_chunk_) tls_chunk_ = std::make_unique<char[]>(TlsContext::kChunk);
      const size_t want = std::min(len, TlsContext::kChunk);
      ssize_t got = ::pread(in_fd, tls_chunk_.get(), want, off);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        if (got == 0) close(std::string("sending ") + what + " failed: the file ended early");
        else socket_failed(std::string("reading ") + what + " failed", errno);
        return Sent::kClosed;
      }
      n = io_write(tls_chunk_.get(), static_cast<size_t>(got));
      if (n < 0 && errno == EPROTO) {
        close(std::string("sending ") + what + " failed: TLS error: " + tls_error_);
        return Sent::kClosed;
      }
      // A write OpenSSL could not finish must be retried with the same bytes
      // first: no reply may go out before it (see pump()).
      tls_file_retry_ = n < 0;
    }
    if (n > 0) {
      sent = static_cast<size_t>(n);
      proxy_.counters().net_output_bytes += sent;
      last_progress_ms_ = now_ms();
      return Sent::kSome;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Sent::kBlocked;
    if (n == 0) {
      close(std::string("sending ") + what + " failed: the file ended early");
    } else {
      socket_failed(std::string("sending ") + what + " failed", errno);
    }
    return Sent::kClosed;
  }
}

void ReplicaSession::pump() {
  if (closing_) return;
  size_t budget = kPumpBudget;
  bool blocked = false;
  while (budget > 0) {
    // (TLS: a file chunk SSL_write did not finish goes on first, with the same bytes.)
    const bool file_retry = tls_file_retry_;
    if (out_pos_ < out_.size() && !file_retry) {
      ssize_t n = io_write(out_.data() + out_pos_, out_.size() - out_pos_);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          blocked = true;
          break;
        }
        if (errno == EPROTO && ssl_) {
          close("TLS error: " + tls_error_);
          return;
        }
        socket_failed("write error", errno);
        return;
      }
      out_pos_ += static_cast<size_t>(n);
      proxy_.counters().net_output_bytes += static_cast<uint64_t>(n);
      last_progress_ms_ = now_ms();
      budget -= std::min(budget, static_cast<size_t>(n));
      if (out_pos_ == out_.size()) {
        if (out_.capacity() > kKeepOutBuffer) {
          std::string().swap(out_);
        } else {
          out_.clear();
        }
        out_pos_ = 0;
      } else if (out_pos_ >= out_.size() - out_pos_) {
        // The written part is at least what is left: drop it (amortized
        // linear), so out_ stays within twice what waits.
        out_.erase(0, out_pos_);
        out_pos_ = 0;
      }
      // The client read some: commands held back may go on (see the header).
      if (input_held_ && !output_full() && !dispatch_buffered()) return;
      continue;
    }
    if (close_after_flush_ && !file_retry) {
      close("closed after its last reply");
      return;
    }
    if (input_held_ && !dispatch_buffered()) return;  // held with nothing left to write
    if (out_pos_ < out_.size() && !file_retry) continue;
    if (state_ == State::kSendBulk) {
      if (bulk_sent_ < bulk_->size()) {
        size_t want = static_cast<size_t>(std::min<uint64_t>({bulk_->size() - bulk_sent_, kSendChunk, budget}));
        size_t n = 0;
        Sent r = send_file(bulk_->fd(), bulk_sent_, want, "the snapshot", n);
        if (r == Sent::kClosed) return;
        if (r == Sent::kBlocked) {
          blocked = true;
          break;
        }
        bulk_sent_ += n;
        budget -= std::min(budget, n);
        continue;
      }
      if (!rdb_only_) out_ += bulk_->prefix();  // goes out before the log from S+1
      bulk_.reset();
      if (rdb_only_) {
        LOG_INFO(kComponent, "client %s received the snapshot (rdb only): closing",
                 address().c_str());
        close("rdb-only transfer complete");
        return;
      }
      state_ = State::kOnline;
      acked_offset_ = static_cast<int64_t>(cursor_) - 1;
      last_ack_ms_ = now_ms();
      LOG_INFO(kComponent, "replica %s (listening port %d) received the snapshot: online",
               address().c_str(), listening_port_);
      continue;
    }
    if (state_ == State::kOnline && cursor_ <= store_.committed_end()) {
      auto& log = store_.log();
      if (!log.contains(cursor_)) {
        close("its position " + std::to_string(cursor_) + " left the retained log");
        return;
      }
      uint64_t avail = store_.committed_end() + 1 - cursor_;
      size_t want = static_cast<size_t>(std::min<uint64_t>({avail, kSendChunk, budget}));
      backlog::Span span = log.span(cursor_, want);
      size_t n = 0;
      Sent r = send_file(span.fd, span.file_pos, span.len, "the stream", n);
      if (r == Sent::kClosed) return;
      if (r == Sent::kBlocked) {
        blocked = true;
        break;
      }
      cursor_ += n;
      budget -= std::min(budget, n);
      continue;
    }
    break;  // nothing to send
  }
  // Blocked on a full socket, or a budget spent (the socket is still writable,
  // so the poll fires again at once and other sessions get their turn).
  want_write_ = blocked || budget == 0 || turn_spent_ || tls_input_pending();
  update_poll();
}

}  // namespace psync::proxy
