#include "proxy/upstream.h"

#include <algorithm>
#include <cstring>

#include "proxy/log.h"
#include "proxy/proxy.h"

namespace psync::proxy {

namespace {
const char* kComponent = "upstream";
constexpr size_t kReadBuffer = 256 * 1024;
constexpr uint64_t kConnectTimeoutMs = 10'000;
constexpr uint64_t kBackoffMinMs = 1'000;
constexpr uint64_t kBackoffMaxMs = 30'000;
constexpr uint64_t kProgressEveryMs = 5'000;

struct WriteReq {
  uv_write_t req;
  std::string data;
};

struct ConnectCtx {
  Upstream* self;
  uint64_t generation;
};
}  // namespace

struct Upstream::Commit {
  uv_work_t req;
  Upstream* self;
  std::unique_ptr<backlog::SnapshotWriter> writer;
  std::string replid;
  uint64_t offset;
  std::shared_ptr<backlog::Snapshot> snapshot;
  std::string error;
};

const char* Upstream::state_name(State s) {
  switch (s) {
    case State::kConnecting: return "connecting";
    case State::kHandshake: return "handshake";
    case State::kWaitingPayload: return "waiting_payload";
    case State::kTransfer: return "transfer";
    case State::kStreaming: return "streaming";
    case State::kBackoff: return "backoff";
  }
  return "?";
}

Upstream::Upstream(Proxy& proxy) : proxy_(proxy), read_buf_(kReadBuffer) {
  uv_timer_init(proxy_.loop(), &retry_timer_);
  retry_timer_.data = this;
  uv_timer_init(proxy_.loop(), &watchdog_);
  watchdog_.data = this;
}

Upstream::~Upstream() = default;

void Upstream::start() {
  uv_timer_start(&watchdog_, on_watchdog, 1000, 1000);
  connect();
}

void Upstream::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (tcp_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), on_closed);
    tcp_ = nullptr;
  }
  ++link_generation_;
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_));
  if (writer_) writer_->abort();
  uv_close(reinterpret_cast<uv_handle_t*>(&retry_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
}

uint64_t Upstream::rdb_bytes_received() const { return payload_.payload_bytes(); }

std::optional<uint64_t> Upstream::rdb_bytes_expected() const { return payload_.payload_size(); }

double Upstream::seconds_since_last_byte() const {
  if (last_byte_ms_ == 0) return -1;
  return static_cast<double>(now_ms() - last_byte_ms_) / 1000.0;
}

void Upstream::connect() {
  if (stopped_) return;
  state_ = State::kConnecting;
  ++link_generation_;
  last_byte_ms_ = now_ms();  // the connect timeout counts from here
  const HostPort& up = proxy_.config().upstream;
  LOG_INFO(kComponent, "connecting to %s", up.str().c_str());
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  resolve_.data = this;
  resolving_ = true;
  int rc = uv_getaddrinfo(proxy_.loop(), &resolve_, on_resolved, up.host.c_str(),
                          std::to_string(up.port).c_str(), &hints);
  if (rc != 0) {
    resolving_ = false;
    fail(std::string("cannot resolve ") + up.host + ": " + uv_strerror(rc));
  }
}

void Upstream::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* self = static_cast<Upstream*>(req->data);
  self->resolving_ = false;
  if (self->stopped_ || status == UV_ECANCELED) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || !res) {
    uv_freeaddrinfo(res);
    self->fail(std::string("cannot resolve ") + self->proxy_.config().upstream.host + ": " +
               uv_strerror(status));
    return;
  }
  self->tcp_ = new uv_tcp_t;
  uv_tcp_init(self->proxy_.loop(), self->tcp_);
  self->tcp_->data = self;
  uv_tcp_nodelay(self->tcp_, 1);
  uv_tcp_keepalive(self->tcp_, 1, 30);
  auto* ctx = new ConnectCtx{self, self->link_generation_};
  self->connect_req_.data = ctx;
  int rc = uv_tcp_connect(&self->connect_req_, self->tcp_, res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc != 0) {
    delete ctx;
    self->fail(std::string("cannot connect: ") + uv_strerror(rc));
  }
}

void Upstream::on_connected(uv_connect_t* req, int status) {
  auto* ctx = static_cast<ConnectCtx*>(req->data);
  Upstream* self = ctx->self;
  bool stale = ctx->generation != self->link_generation_ || self->stopped_;
  delete ctx;
  if (stale) return;
  if (status < 0) {
    self->fail(std::string("cannot connect: ") + uv_strerror(status));
    return;
  }
  LOG_INFO(kComponent, "connected to %s", self->proxy_.config().upstream.str().c_str());
  self->state_ = State::kHandshake;
  self->last_byte_ms_ = now_ms();
  self->line_.clear();
  self->handshake_.clear();
  self->handshake_step_ = 0;
  const Config& c = self->proxy_.config();
  if (!c.masterauth.empty()) {
    std::string auth = "AUTH ";
    if (!c.masteruser.empty()) auth += c.masteruser + " ";
    self->handshake_.push_back(auth + c.masterauth + "\r\n");
  }
  // Lets the master list the proxy under its own port. 2.4 does not know
  // REPLCONF; the error reply is harmless there. No capa: the $EOF form would
  // hold the stream back until an ACK a SYNC replica never sends.
  self->handshake_.push_back("REPLCONF listening-port " + std::to_string(c.port) + "\r\n");
  uv_read_start(reinterpret_cast<uv_stream_t*>(self->tcp_), on_alloc, on_read);
  self->send_next_handshake_step();
}

void Upstream::send(std::string bytes) {
  if (!tcp_) return;
  auto* w = new WriteReq;
  w->data = std::move(bytes);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(tcp_), &buf, 1, on_write);
  if (rc != 0) {
    delete w;
    fail(std::string("write failed: ") + uv_strerror(rc));
  }
}

void Upstream::on_write(uv_write_t* req, int /*status*/) {
  // A failed write shows up as a read error or EOF on the same link.
  delete static_cast<WriteReq*>(req->data);
}

void Upstream::send_next_handshake_step() {
  if (handshake_step_ < handshake_.size()) {
    send(handshake_[handshake_step_]);
    return;
  }
  state_ = State::kWaitingPayload;
  payload_.reset();
  payload_failed_ = false;
  write_error_.clear();
  LOG_INFO(kComponent, "sent SYNC; waiting for the master's RDB");
  send("SYNC\r\n");
}

void Upstream::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Upstream*>(handle->data);
  *buf = uv_buf_init(self->read_buf_.data(), static_cast<unsigned>(self->read_buf_.size()));
}

void Upstream::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Upstream*>(stream->data);
  if (self->stopped_ || reinterpret_cast<uv_tcp_t*>(stream) != self->tcp_) return;
  if (nread == UV_EOF) {
    self->fail("the master closed the connection");
    return;
  }
  if (nread < 0) {
    self->fail(std::string("read error: ") + uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) return;
  self->last_byte_ms_ = now_ms();
  self->proxy_.counters().net_input_bytes += static_cast<uint64_t>(nread);
  self->handle_bytes(buf->base, static_cast<size_t>(nread));
}

void Upstream::handle_bytes(const char* data, size_t len) {
  std::string_view in(data, len);
  while (!in.empty() && tcp_) {
    switch (state_) {
      case State::kHandshake: {
        size_t nl = in.find('\n');
        if (nl == std::string_view::npos) {
          line_.append(in);
          if (line_.size() > 4096) fail("handshake reply line too long");
          return;
        }
        line_.append(in.substr(0, nl));
        in.remove_prefix(nl + 1);
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        std::string line = std::move(line_);
        line_.clear();
        if (line.empty()) continue;  // keepalive
        handle_handshake_line(line);
        continue;
      }
      case State::kWaitingPayload:
      case State::kTransfer: {
        size_t consumed = 0;
        auto st = payload_.feed(in, consumed, *this);
        in.remove_prefix(consumed);
        if (payload_failed_) {
          fail("cannot write the snapshot to " + proxy_.config().dir + ": " + write_error_);
          return;
        }
        switch (st) {
          case protocol::PayloadReader::Status::kNeedMore:
            return;
          case protocol::PayloadReader::Status::kDone:
            finish_transfer(in);
            return;
          case protocol::PayloadReader::Status::kContinue:
            fail("the master answered SYNC with +" + payload_.continue_line());
            return;
          case protocol::PayloadReader::Status::kError:
            if (payload_.error_is_reply()) {
              fail("the master refused SYNC: " + payload_.error());
            } else {
              fail("bad reply to SYNC: " + payload_.error());
            }
            return;
        }
        return;
      }
      case State::kStreaming: {
        if (!stream_.feed(in, *this)) {
          fail("the master sent bytes that are not RESP: " + stream_.error());
          return;
        }
        if (stream_failed_) {
          fail("cannot append to the replication log in " + proxy_.config().dir);
        }
        return;
      }
      case State::kConnecting:
      case State::kBackoff:
        return;
    }
  }
}

void Upstream::handle_handshake_line(const std::string& line) {
  const std::string& sent = handshake_[handshake_step_];
  bool is_auth = sent.rfind("AUTH ", 0) == 0;
  if (line[0] == '-') {
    if (is_auth) {
      fail("the master refused AUTH: " + line.substr(1));
      return;
    }
    LOG_DEBUG(kComponent, "master answered %.*s with %s (ignored)",
              static_cast<int>(sent.size() - 2), sent.c_str(), line.c_str());
  } else if (line[0] != '+') {
    fail("unexpected handshake reply: " + line.substr(0, 200));
    return;
  }
  ++handshake_step_;
  send_next_handshake_step();
}

void Upstream::on_keepalive() { LOG_DEBUG(kComponent, "keepalive while the master prepares its RDB"); }

void Upstream::on_payload_start(std::optional<uint64_t> len) {
  state_ = State::kTransfer;
  last_progress_ms_ = now_ms();
  if (len) {
    LOG_INFO(kComponent, "receiving the master's RDB: %s", human_bytes(static_cast<double>(*len)).c_str());
  } else {
    LOG_INFO(kComponent, "receiving the master's RDB (size not announced, EOF-marked)");
  }
  try {
    writer_ = std::make_unique<backlog::SnapshotWriter>(proxy_.config().dir);
  } catch (const std::exception& e) {
    payload_failed_ = true;
    write_error_ = e.what();
  }
}

void Upstream::on_payload_data(std::string_view chunk) {
  if (payload_failed_ || !writer_) return;
  try {
    writer_->write(chunk);
  } catch (const std::exception& e) {
    payload_failed_ = true;
    write_error_ = e.what();
  }
}

void Upstream::on_payload_end() {}

void Upstream::finish_transfer(std::string_view rest) {
  LOG_INFO(kComponent, "RDB received (%s); storing it", human_bytes(static_cast<double>(writer_->bytes())).c_str());
  uv_read_stop(reinterpret_cast<uv_stream_t*>(tcp_));
  held_stream_.assign(rest);
  committing_ = true;
  proxy_.set_switching(true);
  auto* c = new Commit;
  c->req.data = c;
  c->self = this;
  c->writer = std::move(writer_);
  c->replid = random_replid();
  c->offset = proxy_.lineage_switch_offset();
  uv_queue_work(proxy_.loop(), &c->req, on_commit_work, on_commit_done);
}

void Upstream::on_commit_work(uv_work_t* req) {
  auto* c = static_cast<Commit*>(req->data);
  try {
    c->snapshot = c->writer->commit(c->replid, c->offset);
  } catch (const std::exception& e) {
    c->error = e.what();
  }
}

void Upstream::on_commit_done(uv_work_t* req, int /*status*/) {
  std::unique_ptr<Commit> c(static_cast<Commit*>(req->data));
  Upstream* self = c->self;
  self->committing_ = false;
  self->proxy_.set_switching(false);
  if (self->stopped_) return;
  if (!c->error.empty()) {
    self->fail("cannot store the snapshot: " + c->error);
    return;
  }
  ++self->sync_count_;
  self->attempts_ = 0;
  self->proxy_.begin_lineage(std::move(c->snapshot));
  self->state_ = State::kStreaming;
  self->last_byte_ms_ = now_ms();
  self->stream_.reset();
  self->stream_failed_ = false;
  LOG_INFO(kComponent, "in sync with the master at %s: streaming",
           self->proxy_.config().upstream.str().c_str());
  std::string held = std::move(self->held_stream_);
  self->held_stream_.clear();
  if (!held.empty()) self->handle_bytes(held.data(), held.size());
  if (self->tcp_) uv_read_start(reinterpret_cast<uv_stream_t*>(self->tcp_), on_alloc, on_read);
}

void Upstream::on_stream(std::string_view bytes, bool at_boundary) {
  if (stream_failed_) return;
  if (!proxy_.append_stream(bytes, at_boundary)) stream_failed_ = true;
}

void Upstream::on_upstream_ping() {}

void Upstream::fail(const std::string& why) {
  if (stopped_) return;
  last_error_ = why;
  bool was_streaming = state_ == State::kStreaming;
  uint64_t delay = std::min(kBackoffMaxMs, kBackoffMinMs << std::min(attempts_, 5));
  ++attempts_;
  LOG_ERROR(kComponent, "%s: %s; retrying in %.0f s", proxy_.config().upstream.str().c_str(),
            why.c_str(), static_cast<double>(delay) / 1000.0);
  if (tcp_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), on_closed);
    tcp_ = nullptr;
  }
  ++link_generation_;
  if (writer_) {
    writer_->abort();
    writer_.reset();
  }
  if (was_streaming) proxy_.upstream_lost();
  state_ = State::kBackoff;
  uv_timer_start(&retry_timer_, on_retry_timer, delay, 0);
}

void Upstream::on_closed(uv_handle_t* handle) { delete reinterpret_cast<uv_tcp_t*>(handle); }

void Upstream::on_retry_timer(uv_timer_t* t) { static_cast<Upstream*>(t->data)->connect(); }

void Upstream::on_watchdog(uv_timer_t* t) {
  auto* self = static_cast<Upstream*>(t->data);
  if (self->stopped_ || self->committing_) return;
  uint64_t now = now_ms();
  uint64_t idle = now - self->last_byte_ms_;
  switch (self->state_) {
    case State::kConnecting:
      if (idle > kConnectTimeoutMs) self->fail("connect timed out");
      return;
    case State::kHandshake:
    case State::kWaitingPayload:
    case State::kTransfer:
    case State::kStreaming: {
      auto timeout_ms = static_cast<uint64_t>(self->proxy_.config().upstream_timeout_s * 1000);
      if (idle > timeout_ms) {
        char msg[96];
        snprintf(msg, sizeof msg, "no data from the master for %.0f s", static_cast<double>(idle) / 1000.0);
        self->fail(msg);
        return;
      }
      if (self->state_ == State::kTransfer && now - self->last_progress_ms_ >= kProgressEveryMs) {
        self->last_progress_ms_ = now;
        auto got = static_cast<double>(self->payload_.payload_bytes());
        if (auto size = self->payload_.payload_size(); size && *size > 0) {
          LOG_INFO(kComponent, "RDB transfer: %s of %s (%.0f%%)", human_bytes(got).c_str(),
                   human_bytes(static_cast<double>(*size)).c_str(), 100.0 * got / static_cast<double>(*size));
        } else {
          LOG_INFO(kComponent, "RDB transfer: %s so far", human_bytes(got).c_str());
        }
      }
      return;
    }
    case State::kBackoff:
      return;
  }
}

}  // namespace psync::proxy
