#include "proxy/link.h"

#include <algorithm>
#include <cstring>

#include "protocol/numbers.h"
#include "protocol/text.h"
#include "proxy/log.h"
#include "proxy/proxy.h"  // Counters, now_ms

namespace psync::proxy {

namespace {
constexpr size_t kReadBuffer = 256 * 1024;
constexpr uint64_t kBackoffMinMs = 1'000;
constexpr uint64_t kBackoffMaxMs = 30'000;
constexpr uint64_t kProgressEveryMs = 5'000;

struct WriteReq {
  uv_write_t req;
  std::string data;
};

}  // namespace

// One name lookup or one TCP connect: each attempt gets its own request, which
// carries the generation of the link it was made for. A request that comes
// back for an older generation (the attempt failed or timed out meanwhile) is
// freed and ignored.
// They reach the Link through its anchor: a Link destroyed while a lookup is
// still in the thread pool leaves the anchor empty, and the callback only frees.
struct Link::Anchor {
  Link* link;
};
struct Link::Resolve {
  uv_getaddrinfo_t req;
  std::shared_ptr<Anchor> anchor;
  uint64_t generation;
};
struct Link::Connect {
  uv_connect_t req;
  std::shared_ptr<Anchor> anchor;
  uint64_t generation;
};

const char* Link::state_name(State s) {
  switch (s) {
    case State::kResolving: return "resolving";
    case State::kConnecting: return "connecting";
    case State::kHandshake: return "handshake";
    case State::kWaitingPayload: return "waiting_payload";
    case State::kTransfer: return "transfer";
    case State::kStored: return "storing_rdb";
    case State::kStreaming: return "streaming";
    case State::kBackoff: return "backoff";
    case State::kStopped: return "stopped";
  }
  return "?";
}

const char* Link::mode_name(Mode m) {
  switch (m) {
    case Mode::kUnknown: return "";
    case Mode::kSync: return "sync";
    case Mode::kPsync: return "psync";
  }
  return "?";
}

Link::Link(uv_loop_t* loop, LinkOptions options, LinkConsumer& consumer)
    : loop_(loop),
      options_(std::move(options)),
      consumer_(&consumer),
      component_(options_.name.c_str()),
      anchor_(std::make_shared<Anchor>(Anchor{this})),
      read_buf_(kReadBuffer) {
  for (uv_timer_t** t : {&retry_timer_, &watchdog_, &ack_timer_}) {
    *t = new uv_timer_t;
    uv_timer_init(loop_, *t);
    (*t)->data = this;
  }
}

void Link::rebind(LinkConsumer& consumer, const std::string& name) {
  consumer_ = &consumer;
  options_.name = name;
  component_ = options_.name.c_str();
  options_.retry = true;
}

Link::~Link() {
  stop();
  anchor_->link = nullptr;
}

void Link::start() {
  if (started_ || stopped_) return;
  started_ = true;
  start_timers();
  connect();
}

void Link::start_timers() {
  uv_timer_start(watchdog_, on_watchdog, 1000, 1000);
  uv_timer_start(ack_timer_, on_ack_timer, 1000, 1000);
}

int Link::fd() const {
  uv_os_fd_t fd = -1;
  if (!tcp_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(tcp_), &fd) != 0) return -1;
  return fd;
}

bool Link::pause_at_boundary(OnPaused on_paused) {
  if (stopped_ || state_ != State::kStreaming || !tcp_) return false;
  on_paused_ = std::move(on_paused);
  return true;
}

void Link::cancel_pause() { on_paused_ = nullptr; }

bool Link::try_pause_now() {
  if (!on_paused_ || state_ != State::kStreaming || !tcp_) return false;
  // Nothing read past the last boundary, and no write of ours half sent.
  if (stream_.bytes_in() != last_boundary_in_ ||
      uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(tcp_)) != 0) {
    return false;
  }
  pause_now({});
  return true;
}

void Link::maybe_pause(std::string_view fed) {
  const uint64_t past = stream_.bytes_in() - last_boundary_in_;
  // The boundary is before this read (a command longer than the read goes
  // on), or a write of ours is half sent: the next read decides.
  if (past > fed.size() || uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(tcp_)) != 0) return;
  pause_now(std::string(fed.substr(fed.size() - past)));
}

void Link::pause_now(std::string tail) {
  uv_read_stop(reinterpret_cast<uv_stream_t*>(tcp_));
  OnPaused done = std::move(on_paused_);
  on_paused_ = nullptr;
  LOG_INFO(component_, "stopped reading at a command boundary (%zu bytes read past it are kept)", tail.size());
  done(std::move(tail));
}

void Link::resume_at_boundary(uint64_t master_base, std::string_view tail) {
  if (stopped_ || !tcp_) return;
  start_stream();
  master_base_ = master_base;
  state_ = State::kStreaming;
  last_byte_ms_ = now_ms();
  if (!tail.empty()) handle_bytes(tail.data(), tail.size());
  if (tcp_) uv_read_start(reinterpret_cast<uv_stream_t*>(tcp_), on_alloc, on_read);
}

Link::Adopted Link::adopted_stats() const {
  return Adopted{mode_, master_version_, sync_count_, partial_resyncs_, total_bytes_, total_commands()};
}

bool Link::adopt(int fd, const Adopted& from, uint64_t master_base, std::string_view tail, std::string& error) {
  if (started_ || stopped_) {
    error = "the link is already started";
    return false;
  }
  auto* tcp = new uv_tcp_t;
  uv_tcp_init(loop_, tcp);
  int rc = uv_tcp_open(tcp, fd);
  if (rc != 0) {
    error = std::string("cannot adopt the upstream socket: ") + uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), on_closed);
    return false;
  }
  tcp_ = tcp;
  tcp_->data = this;
  started_ = true;
  start_timers();
  ++link_generation_;
  mode_ = from.mode;
  psync_sent_ = from.mode == Mode::kPsync;
  master_version_ = from.master_version;
  sync_count_ = from.sync_count;
  partial_resyncs_ = from.partial_resyncs;
  total_bytes_ = from.total_bytes;
  commands_before_ = from.total_commands;
  LOG_INFO(component_, "took over the connection to %s from the previous image: streaming on after byte %llu of the master's stream",
           options_.address.str().c_str(), static_cast<unsigned long long>(master_base));
  resume_at_boundary(master_base, tail);
  return true;
}

void Link::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (tcp_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), on_closed);
    tcp_ = nullptr;
  }
  ++link_generation_;
  // A lookup already running in the thread pool cannot be cancelled: its
  // callback comes later, sees a stale generation and frees it.
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolving_->req));
  if (writer_) writer_->abort();
  state_ = State::kStopped;
  for (uv_timer_t* t : {retry_timer_, watchdog_, ack_timer_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

uint64_t Link::rdb_bytes_received() const { return payload_.payload_bytes(); }

std::optional<uint64_t> Link::rdb_bytes_expected() const { return payload_.payload_size(); }

double Link::seconds_since_last_byte() const {
  if (last_byte_ms_ == 0) return -1;
  return static_cast<double>(now_ms() - last_byte_ms_) / 1000.0;
}

void Link::connect() {
  if (stopped_) return;
  state_ = State::kResolving;
  ++link_generation_;
  last_byte_ms_ = now_ms();  // the lookup's timeout counts from here
  const HostPort& up = options_.address;
  LOG_INFO(component_, "connecting to %s", up.str().c_str());
  if (resolving_) {
    // Never two lookups at once: the one of an earlier attempt is still in the
    // thread pool (getaddrinfo cannot be interrupted). A fresh one starts when
    // it comes back.
    LOG_INFO(component_, "waiting for an earlier lookup of %s to finish", up.host.c_str());
    return;
  }
  start_resolve();
}

void Link::start_resolve() {
  const HostPort& up = options_.address;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  auto* r = new Resolve{{}, anchor_, link_generation_};
  r->req.data = r;
  resolving_ = r;
  int rc = uv_getaddrinfo(loop_, &r->req, on_resolved, up.host.c_str(),
                          std::to_string(up.port).c_str(), &hints);
  if (rc != 0) {
    resolving_ = nullptr;
    delete r;
    fail(std::string("cannot resolve ") + up.host + ": " + uv_strerror(rc));
  }
}

void Link::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<Resolve> r(static_cast<Resolve*>(req->data));
  Link* self = r->anchor->link;
  if (self == nullptr) {  // the Link is gone
    uv_freeaddrinfo(res);
    return;
  }
  self->resolving_ = nullptr;
  if (self->stopped_) {
    uv_freeaddrinfo(res);
    return;
  }
  if (r->generation != self->link_generation_ || status == UV_ECANCELED) {
    // The attempt it was made for has failed meanwhile. If a newer attempt
    // waits for it to end, that attempt's own lookup starts now.
    uv_freeaddrinfo(res);
    if (self->state_ == State::kResolving) self->start_resolve();
    return;
  }
  if (status < 0 || !res) {
    uv_freeaddrinfo(res);
    self->fail(std::string("cannot resolve ") + self->options_.address.host + ": " +
               uv_strerror(status));
    return;
  }
  self->state_ = State::kConnecting;
  self->last_byte_ms_ = now_ms();  // the connect timeout counts from here
  self->tcp_ = new uv_tcp_t;
  uv_tcp_init(self->loop_, self->tcp_);
  self->tcp_->data = self;
  uv_tcp_nodelay(self->tcp_, 1);
  uv_tcp_keepalive(self->tcp_, 1, 30);
  auto* c = new Connect{{}, self->anchor_, self->link_generation_};
  c->req.data = c;
  int rc = uv_tcp_connect(&c->req, self->tcp_, res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc != 0) {
    delete c;
    self->fail(std::string("cannot connect: ") + uv_strerror(rc));
  }
}

void Link::on_connected(uv_connect_t* req, int status) {
  std::unique_ptr<Connect> attempt(static_cast<Connect*>(req->data));
  Link* self = attempt->anchor->link;
  if (self == nullptr || attempt->generation != self->link_generation_ || self->stopped_) return;
  if (status < 0) {
    self->fail(std::string("cannot connect: ") + uv_strerror(status));
    return;
  }
  LOG_INFO(self->component_, "connected to %s", self->options_.address.str().c_str());
  self->state_ = State::kHandshake;
  self->last_byte_ms_ = now_ms();
  self->line_.clear();
  self->bulk_left_ = -1;
  self->handshake_.clear();
  self->handshake_step_ = 0;
  const LinkOptions& c = self->options_;
  if (!c.masterauth.empty()) {
    std::string auth = "AUTH ";
    if (!c.masteruser.empty()) auth += c.masteruser + " ";
    self->handshake_.emplace_back(Step::kAuth, auth + c.masterauth + "\r\n");
  }
  // The master's version for /status; a master that refuses INFO is fine.
  self->handshake_.emplace_back(Step::kInfo, "INFO server\r\n");
  // Lets the master list the proxy under its own port. 2.4 does not know
  // REPLCONF; the error reply is harmless there. No "capa eof": the $EOF form
  // would hold the stream back until an ACK a SYNC replica never sends.
  self->handshake_.emplace_back(Step::kReplconf,
                                "REPLCONF listening-port " + std::to_string(c.listening_port) + "\r\n");
  if (c.mode != UpstreamMode::kSync) {
    self->handshake_.emplace_back(Step::kReplconf, "REPLCONF capa psync2\r\n");
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(self->tcp_), on_alloc, on_read);
  self->send_next_handshake_step();
}

void Link::send(std::string bytes) {
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

void Link::on_write(uv_write_t* req, int /*status*/) {
  // A failed write shows up as a read error or EOF on the same link.
  delete static_cast<WriteReq*>(req->data);
}

void Link::send_next_handshake_step() {
  if (handshake_step_ < handshake_.size()) {
    send(handshake_[handshake_step_].second);
    return;
  }
  send_sync_request();
}

void Link::send_sync_request() {
  state_ = State::kWaitingPayload;
  payload_.reset();
  payload_failed_ = false;
  write_error_.clear();
  pending_replid_.clear();
  if (options_.mode == UpstreamMode::kSync) {
    psync_sent_ = false;
    LOG_INFO(component_, "sent SYNC; waiting for the master's RDB");
    send("SYNC\r\n");
    return;
  }
  psync_sent_ = true;
  std::string request;
  // The resume point is the store's: the master offset of the last byte
  // committed to the log, never a count of bytes merely read.
  const backlog::UpstreamPosition at = consumer_->resume_point().value_or(backlog::UpstreamPosition{});
  if (at.replid.empty()) {
    request = "PSYNC ? -1\r\n";
    LOG_INFO(component_, "sent PSYNC ? -1 (full resync)");
  } else {
    std::string off = std::to_string(at.offset + 1);
    request = "PSYNC " + at.replid + " " + off + "\r\n";
    LOG_INFO(component_, "sent PSYNC %s %s (asking to resume)", at.replid.c_str(), off.c_str());
  }
  send(request);
}

void Link::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Link*>(handle->data);
  *buf = uv_buf_init(self->read_buf_.data(), static_cast<unsigned>(self->read_buf_.size()));
}

void Link::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Link*>(stream->data);
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
  self->total_bytes_ += static_cast<uint64_t>(nread);
  if (self->options_.counters) self->options_.counters->net_input_bytes += static_cast<uint64_t>(nread);
  self->handle_bytes(buf->base, static_cast<size_t>(nread));
}

void Link::handle_bytes(const char* data, size_t len) {
  std::string_view in(data, len);
  while (!in.empty() && tcp_) {
    switch (state_) {
      case State::kHandshake: {
        if (bulk_left_ >= 0) {  // inside a bulk reply (INFO)
          size_t take = std::min(in.size(), static_cast<size_t>(bulk_left_));
          bulk_.append(in.substr(0, take));
          in.remove_prefix(take);
          bulk_left_ -= static_cast<int64_t>(take);
          if (bulk_left_ == 0) {
            bulk_left_ = -1;
            std::string body = std::move(bulk_);
            bulk_.clear();
            if (body.size() >= 2) body.resize(body.size() - 2);  // CRLF
            handle_handshake_reply('$', body);
          }
          continue;
        }
        size_t nl = in.find('\n');
        if (nl == std::string_view::npos) {
          line_.append(in);
          if (line_.size() > 4096) fail("handshake reply line too long");
          return;
        }
        line_.append(in.substr(0, nl));
        in.remove_prefix(nl + 1);
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        std::string line;
        line.swap(line_);
        if (line.empty()) continue;  // keepalive
        if (line.front() == '$') {
          auto len = protocol::parse_i64(std::string_view(line).substr(1));
          if (!len || *len < -1 || *len > (64 << 20)) {
            fail("bad handshake reply: " + protocol::peer_text(line, 100));
            return;
          }
          if (*len == -1) {
            handle_handshake_reply('$', "");
          } else {
            bulk_left_ = *len + 2;
            bulk_.clear();
          }
          continue;
        }
        handle_handshake_reply(line.front(), line.substr(1));
        continue;
      }
      case State::kWaitingPayload:
      case State::kTransfer: {
        size_t consumed = 0;
        auto st = payload_.feed(in, consumed, *this);
        in.remove_prefix(consumed);
        if (payload_failed_) {
          std::string what = "cannot write the snapshot to " + options_.dir + ": " + write_error_;
          consumer_->on_storage_error(what);
          fail(what);
          return;
        }
        if (st == protocol::PayloadReader::Status::kDone) {
          finish_transfer(in);
          return;
        }
        if (!handle_payload_result(st)) return;
        continue;  // fell back to SYNC, or resumed: the rest is read anew
      }
      case State::kStreaming: {
        if (!stream_.feed(in, *this)) {
          consumer_->on_bad_stream();  // the same bytes would come again: resync in full
          fail("the master sent bytes that are not RESP: " + stream_.error());
          return;
        }
        if (getack_pending_) {  // answered once the whole feed is counted
          getack_pending_ = false;
          if (!stream_failed_) send_ack();
        }
        if (stream_failed_) {
          fail("the stream's consumer refused its bytes (see above)");
          return;
        }
        if (on_paused_) maybe_pause(in);
        return;
      }
      case State::kResolving:
      case State::kConnecting:
      case State::kStored:
      case State::kBackoff:
      case State::kStopped:
        return;
    }
  }
}

void Link::handle_handshake_reply(char type, const std::string& body) {
  const auto& [step, sent] = handshake_[handshake_step_];
  std::string_view cmd(sent.data(), sent.size() - 2);
  if (type == '-') {
    if (step == Step::kAuth) {
      fail("the master refused AUTH: " + protocol::peer_text(body));
      return;
    }
    if (body.rfind("NOAUTH", 0) == 0) {
      fail("the master requires a password (--masterauth): " + protocol::peer_text(body));
      return;
    }
    LOG_DEBUG(component_, "master answered %.*s with -%s (ignored)", static_cast<int>(cmd.size()),
              cmd.data(), protocol::peer_text(body).c_str());
  } else if (type == '$' && step == Step::kInfo) {
    // One "name:value" line of the reply ("" when absent), ASCII-safe.
    auto field = [&body](std::string_view name, size_t max) -> std::string {
      size_t at = 0;
      while ((at = body.find(name, at)) != std::string::npos) {
        if ((at == 0 || body[at - 1] == '\n') && at + name.size() < body.size() && body[at + name.size()] == ':') {
          const size_t from = at + name.size() + 1;
          const size_t end = body.find_first_of("\r\n", from);
          return protocol::peer_text(std::string_view(body).substr(from, end - from), max);
        }
        at += name.size();
      }
      return "";
    };
    master_version_ = field("redis_version", 32);
    if (!master_version_.empty()) LOG_INFO(component_, "the master is Redis %s", master_version_.c_str());
    // Another psync-proxy says what it is (a standby's peer, proxy/standby.h).
    peer_.role = field("psync_proxy_role", 16);
    peer_.run_id = field("run_id", 40);
    peer_.offset = protocol::parse_u64(field("psync_proxy_offset", 20)).value_or(0);
    peer_.seen_ms = now_ms();
  } else if (type != '+' && type != ':' && type != '$') {
    fail("unexpected handshake reply: " + protocol::peer_text(std::string(1, type) + body.substr(0, 200), 200));
    return;
  }
  ++handshake_step_;
  send_next_handshake_step();
}

bool Link::handle_payload_result(protocol::PayloadReader::Status st) {
  using Status = protocol::PayloadReader::Status;
  switch (st) {
    case Status::kNeedMore:
    case Status::kDone:
      return false;
    case Status::kContinue:
      if (!psync_sent_) {
        fail("the master answered SYNC with +" + protocol::peer_text(payload_.continue_line()));
        return false;
      }
      return resume_stream(payload_.continue_line());
    case Status::kError: {
      const std::string err = payload_.error().empty() ? "(an empty error reply)" : payload_.error();
      if (!payload_.error_is_reply()) {
        fail(std::string("bad reply to ") + (psync_sent_ ? "PSYNC: " : "SYNC: ") + err);
        return false;
      }
      if (!psync_sent_) {
        fail("the master refused SYNC: " + err);
        return false;
      }
      if (err.rfind("NOMASTERLINK", 0) == 0 || err.rfind("LOADING", 0) == 0) {
        fail("the master cannot serve PSYNC now: " + err);
        return false;
      }
      if (options_.mode == UpstreamMode::kPsync) {
        fail("the master refused PSYNC (--upstream-mode psync): " + err);
        return false;
      }
      // A master without PSYNC (2.6 and older): SYNC on the same link, as
      // Redis replicas do.
      LOG_INFO(component_, "the master does not take PSYNC (%s): falling back to SYNC", err.c_str());
      consumer_->on_bad_stream();  // resuming this master is not possible
      payload_.reset();
      psync_sent_ = false;
      send("SYNC\r\n");
      return true;
    }
  }
  return false;
}

void Link::start_stream() {
  commands_before_ += stream_.commands();  // keeps the command total monotonic
  stream_.reset();
  stream_failed_ = false;
  last_boundary_in_ = 0;
}

bool Link::resume_stream(const std::string& continue_line) {
  // "CONTINUE" (2.8) or "CONTINUE <new replid>" (4.0+, after a failover or
  // restart of the master): the bytes from our offset follow.
  std::string_view rest(continue_line);
  rest.remove_prefix(std::min<size_t>(rest.size(), 8));
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  backlog::UpstreamPosition at = consumer_->resume_point().value_or(backlog::UpstreamPosition{});
  const uint64_t resume_from = at.offset;
  if (protocol::is_replid(rest)) {
    if (rest != at.replid) {
      LOG_INFO(component_, "the master's replication ID is now %.*s", 40, rest.data());
    }
    at.replid.assign(rest);
  } else if (!rest.empty()) {
    LOG_WARN(component_,
             "the master's new replication ID %s in +CONTINUE is not 40 hex digits: not adopted; "
             "the link will not be resumable",
             protocol::quoted(rest).c_str());
    at.replid.clear();
  }
  master_base_ = resume_from;
  if (!consumer_->on_continue(at.replid, resume_from)) {
    fail("the continued stream was refused");
    return false;
  }
  start_stream();
  mode_ = Mode::kPsync;
  state_ = State::kStreaming;
  attempts_ = 0;
  ++partial_resyncs_;
  LOG_INFO(component_, "link to %s resumed with +CONTINUE at master offset %llu",
           options_.address.str().c_str(), static_cast<unsigned long long>(resume_from + 1));
  return true;
}

void Link::on_keepalive() { LOG_DEBUG(component_, "keepalive while the master prepares its RDB"); }

void Link::on_status_line(std::string_view line) {
  // "FULLRESYNC <replid> <offset>": the RDB that follows is the master's
  // state at that offset.
  if (line.rfind("FULLRESYNC ", 0) != 0) {
    LOG_DEBUG(component_, "master said +%s", protocol::peer_text(line).c_str());
    return;
  }
  std::string_view rest = line.substr(11);
  size_t sp = rest.find(' ');
  auto off = sp == std::string_view::npos ? std::nullopt : protocol::parse_u64(rest.substr(sp + 1));
  std::string_view id = rest.substr(0, sp);
  if (off && protocol::is_replid(id)) {
    pending_replid_.assign(id);
    pending_offset_ = *off;
    LOG_INFO(component_, "the master starts a full resync: replid %s, offset %llu",
             pending_replid_.c_str(), static_cast<unsigned long long>(pending_offset_));
  } else if (off) {
    // Never kept (it would go into the next PSYNC and /status): the transfer is
    // used, the link is not resumable.
    pending_replid_.clear();
    pending_offset_ = *off;
    LOG_WARN(component_,
             "the master's replication ID %s in +FULLRESYNC is not 40 hex digits: not adopted; "
             "the link will not be resumable",
             protocol::quoted(id).c_str());
  } else {
    LOG_WARN(component_, "cannot read +%s: the link will not be resumable",
             protocol::peer_text(line).c_str());
  }
}

void Link::on_payload_start(std::optional<uint64_t> len) {
  state_ = State::kTransfer;
  last_progress_ms_ = now_ms();
  last_progress_bytes_ = 0;
  if (len) {
    LOG_INFO(component_, "receiving the master's RDB: %s", human_bytes(static_cast<double>(*len)).c_str());
  } else {
    LOG_INFO(component_, "receiving the master's RDB (size not announced, EOF-marked)");
  }
  try {
    writer_ = std::make_unique<backlog::SnapshotWriter>(options_.dir, options_.rdb_tag);
  } catch (const std::exception& e) {
    payload_failed_ = true;
    write_error_ = e.what();
  }
}

void Link::on_payload_data(std::string_view chunk) {
  if (payload_failed_ || !writer_) return;
  try {
    writer_->write(chunk);
  } catch (const std::exception& e) {
    payload_failed_ = true;
    write_error_ = e.what();
  }
}

void Link::on_payload_end() {}

void Link::finish_transfer(std::string_view rest) {
  LOG_INFO(component_, "RDB received (%s); storing it",
           human_bytes(static_cast<double>(writer_->bytes())).c_str());
  uv_read_stop(reinterpret_cast<uv_stream_t*>(tcp_));
  held_stream_.assign(rest);
  state_ = State::kStored;
  ++sync_count_;
  std::optional<backlog::UpstreamPosition> full_resync;
  if (psync_sent_ && !pending_replid_.empty()) full_resync = backlog::UpstreamPosition{pending_replid_, pending_offset_};
  mode_ = psync_sent_ ? Mode::kPsync : Mode::kSync;
  consumer_->on_rdb(std::move(writer_), full_resync);
}

void Link::start_streaming(uint64_t master_base) {
  if (stopped_ || state_ != State::kStored) return;
  attempts_ = 0;
  master_base_ = master_base;
  state_ = State::kStreaming;
  last_byte_ms_ = now_ms();
  start_stream();
  LOG_INFO(component_, "in sync with the master at %s: streaming", options_.address.str().c_str());
  std::string held = std::move(held_stream_);
  held_stream_.clear();
  if (!held.empty()) handle_bytes(held.data(), held.size());
  if (tcp_) uv_read_start(reinterpret_cast<uv_stream_t*>(tcp_), on_alloc, on_read);
}

void Link::on_stream(std::string_view bytes, bool at_boundary, uint64_t upstream_end) {
  // After the consumer refused bytes nothing more of this feed goes to it:
  // the link is closed once the feed returns.
  if (stream_failed_) return;
  if (!consumer_->on_stream(bytes, at_boundary, master_base_ + upstream_end)) {
    stream_failed_ = true;
    return;
  }
  if (at_boundary) last_boundary_in_ = upstream_end;
  // REPLCONF GETACK * (a master waiting for WAIT or a failover) wants an ACK
  // now. It goes on to the replicas too, like the rest of the stream. The
  // search may also hit a value holding these bytes: that only sends one
  // more ACK, which is always harmless.
  static constexpr std::string_view kGetack = "$6\r\nGETACK\r\n";
  if (mode_ == Mode::kPsync && memmem(bytes.data(), bytes.size(), kGetack.data(), kGetack.size())) {
    getack_pending_ = true;
  }
}

void Link::on_upstream_ping(uint64_t upstream_end) {
  if (stream_failed_) return;
  if (!consumer_->on_ping(master_base_ + upstream_end)) {
    stream_failed_ = true;
    return;
  }
  last_boundary_in_ = upstream_end;
}

void Link::send_ack() {
  std::string off = std::to_string(consumer_->ack_offset());
  send("*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$" + std::to_string(off.size()) + "\r\n" + off + "\r\n");
}

void Link::fail(const std::string& why) {
  if (stopped_) return;
  // The peer's parts of `why` were made ASCII-safe where they entered
  // (protocol/text.h), and peer_text() leaves such text as it is; it keeps
  // last_error_ (shown in /status) safe whatever else a caller put in, a --dir path.
  last_error_ = protocol::peer_text(why, 1024);
  bool was_streaming = state_ == State::kStreaming;
  uint64_t delay = std::min(kBackoffMaxMs, kBackoffMinMs << std::min(attempts_, 5));
  ++attempts_;
  if (options_.retry) {
    LOG_ERROR(component_, "%s: %s; retrying in %.0f s", options_.address.str().c_str(), last_error_.c_str(),
              static_cast<double>(delay) / 1000.0);
  } else {
    LOG_WARN(component_, "%s: %s", options_.address.str().c_str(), last_error_.c_str());
  }
  if (tcp_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), on_closed);
    tcp_ = nullptr;
  }
  ++link_generation_;
  if (writer_) {
    writer_->abort();
    writer_.reset();
  }
  state_ = State::kBackoff;
  if (options_.retry) uv_timer_start(retry_timer_, on_retry_timer, delay, 0);
  // Last: the consumer may destroy this link from here.
  consumer_->on_lost(last_error_, was_streaming);
}

void Link::on_closed(uv_handle_t* handle) { delete reinterpret_cast<uv_tcp_t*>(handle); }

void Link::on_retry_timer(uv_timer_t* t) { static_cast<Link*>(t->data)->connect(); }

void Link::on_ack_timer(uv_timer_t* t) {
  auto* self = static_cast<Link*>(t->data);
  // Only a master that took PSYNC expects ACKs; a 2.6 master would queue an
  // error reply into the stream.
  if (self->stopped_ || self->state_ != State::kStreaming || self->mode_ != Mode::kPsync) return;
  self->send_ack();
}

void Link::on_watchdog(uv_timer_t* t) {
  auto* self = static_cast<Link*>(t->data);
  if (self->stopped_ || self->state_ == State::kStored) return;
  uint64_t now = now_ms();
  uint64_t idle = now - self->last_byte_ms_;
  switch (self->state_) {
    case State::kResolving:
    case State::kConnecting: {
      auto timeout_ms = static_cast<uint64_t>(self->options_.connect_timeout_s * 1000);
      if (idle > timeout_ms) {
        const char* what = self->state_ == State::kResolving ? "looking up" : "connecting to";
        char msg[160];
        snprintf(msg, sizeof msg, "%s %s timed out after %.0f s", what,
                 self->options_.address.host.c_str(), static_cast<double>(idle) / 1000.0);
        self->fail(msg);
      }
      return;
    }
    case State::kHandshake:
    case State::kWaitingPayload:
    case State::kTransfer:
    case State::kStreaming: {
      auto timeout_ms = static_cast<uint64_t>(self->options_.read_timeout_s * 1000);
      if (idle > timeout_ms) {
        char msg[96];
        snprintf(msg, sizeof msg, "no data from the master for %.0f s", static_cast<double>(idle) / 1000.0);
        self->fail(msg);
        return;
      }
      if (self->state_ == State::kTransfer && now - self->last_progress_ms_ >= kProgressEveryMs) {
        auto got = static_cast<double>(self->payload_.payload_bytes());
        double secs = static_cast<double>(now - self->last_progress_ms_) / 1000.0;
        double rate = (got - static_cast<double>(self->last_progress_bytes_)) / secs;
        self->last_progress_ms_ = now;
        self->last_progress_bytes_ = self->payload_.payload_bytes();
        std::string speed = human_bytes(rate) + "/s";
        if (auto size = self->payload_.payload_size(); size && *size > 0) {
          double left = static_cast<double>(*size) - got;
          char eta[32] = "unknown";
          if (rate > 0) snprintf(eta, sizeof eta, "%.0f s", left / rate);
          LOG_INFO(self->component_, "RDB transfer: %s of %s (%.0f%%), %s, ETA %s", human_bytes(got).c_str(),
                   human_bytes(static_cast<double>(*size)).c_str(), 100.0 * got / static_cast<double>(*size),
                   speed.c_str(), eta);
        } else {
          LOG_INFO(self->component_, "RDB transfer: %s so far, %s", human_bytes(got).c_str(), speed.c_str());
        }
      }
      return;
    }
    case State::kStored:
    case State::kBackoff:
    case State::kStopped:
      return;
  }
}

}  // namespace psync::proxy
