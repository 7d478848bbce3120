#include "proxy/marker_client.h"

#include <hiredis/hiredis.h>

#include <vector>

#include "protocol/text.h"

namespace psync::proxy {

namespace {

struct WriteReq {
  uv_write_t req;
  std::string data;
};

std::string command(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

}  // namespace

// Requests in flight reach the client through its anchor: one destroyed
// meanwhile leaves it empty, and the callback only frees.
struct MarkerClient::Anchor {
  MarkerClient* client;
};
struct MarkerClient::Resolve {
  uv_getaddrinfo_t req;
  std::shared_ptr<Anchor> anchor;
};
struct MarkerClient::Connect {
  uv_connect_t req;
  std::shared_ptr<Anchor> anchor;
};

MarkerClient::MarkerClient(uv_loop_t* loop, HostPort address, std::string user, std::string password,
                           std::string channel, Callbacks callbacks)
    : loop_(loop),
      address_(std::move(address)),
      user_(std::move(user)),
      password_(std::move(password)),
      channel_(std::move(channel)),
      callbacks_(std::move(callbacks)),
      anchor_(std::make_shared<Anchor>(Anchor{this})),
      reader_(redisReaderCreate()) {}

MarkerClient::~MarkerClient() {
  anchor_->client = nullptr;
  if (tcp_) {
    tcp_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
  }
  redisReaderFree(reader_);
}

void MarkerClient::start() {
  if (state_ != State::kIdle) return;
  state_ = State::kResolving;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  auto* r = new Resolve{{}, anchor_};
  r->req.data = r;
  int rc = uv_getaddrinfo(loop_, &r->req, on_resolved, address_.host.c_str(), std::to_string(address_.port).c_str(),
                          &hints);
  if (rc != 0) {
    delete r;
    fail(std::string("cannot resolve ") + address_.host + ": " + uv_strerror(rc));
  }
}

void MarkerClient::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<Resolve> r(static_cast<Resolve*>(req->data));
  MarkerClient* self = r->anchor->client;
  if (self == nullptr || self->state_ != State::kResolving) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || res == nullptr) {
    uv_freeaddrinfo(res);
    self->fail(std::string("cannot resolve ") + self->address_.host + ": " + uv_strerror(status));
    return;
  }
  self->state_ = State::kConnecting;
  self->tcp_ = new uv_tcp_t;
  uv_tcp_init(self->loop_, self->tcp_);
  self->tcp_->data = self;
  uv_tcp_nodelay(self->tcp_, 1);
  auto* c = new Connect{{}, self->anchor_};
  c->req.data = c;
  int rc = uv_tcp_connect(&c->req, self->tcp_, res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc != 0) {
    delete c;
    self->fail(std::string("cannot connect: ") + uv_strerror(rc));
  }
}

void MarkerClient::on_connected(uv_connect_t* req, int status) {
  std::unique_ptr<Connect> c(static_cast<Connect*>(req->data));
  MarkerClient* self = c->anchor->client;
  if (self == nullptr || self->state_ != State::kConnecting) return;
  if (status < 0) {
    self->fail(std::string("cannot connect: ") + uv_strerror(status));
    return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(self->tcp_),
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        static char chunk[4096];  // one loop thread; the reader copies what it keeps
        *buf = uv_buf_init(chunk, sizeof chunk);
      },
      on_read);
  if (self->password_.empty()) {
    self->state_ = State::kReady;
    if (self->callbacks_.on_ready) self->callbacks_.on_ready();
    return;
  }
  self->state_ = State::kAuth;
  std::vector<std::string> auth = {"AUTH"};
  if (!self->user_.empty()) auth.push_back(self->user_);
  auth.push_back(self->password_);
  self->replies_due_++;
  self->send(command(auth));
}

void MarkerClient::publish(const std::string& nonce) {
  if (state_ != State::kReady) return;
  replies_due_++;
  published_++;
  send(command({"PUBLISH", channel_, nonce}));
}

void MarkerClient::send(std::string bytes) {
  auto* w = new WriteReq;
  w->data = std::move(bytes);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(tcp_), &buf, 1,
                    [](uv_write_t* req, int) { delete static_cast<WriteReq*>(req->data); });
  if (rc != 0) {
    delete w;
    fail(std::string("write failed: ") + uv_strerror(rc));
  }
}

void MarkerClient::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<MarkerClient*>(stream->data);
  if (self == nullptr || self->state_ == State::kFailed) return;
  if (nread < 0) {
    self->fail(nread == UV_EOF ? "the master closed the connection" : std::string("read error: ") + uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) return;
  if (redisReaderFeed(self->reader_, buf->base, static_cast<size_t>(nread)) != REDIS_OK) {
    self->fail("cannot read the master's reply");
    return;
  }
  for (;;) {
    void* reply = nullptr;
    if (redisReaderGetReply(self->reader_, &reply) != REDIS_OK) {
      self->fail(std::string("bad reply from the master: ") + protocol::peer_text(self->reader_->errstr));
      return;
    }
    if (reply == nullptr) return;
    // redisReaderCreate() builds redisReply objects.
    auto* r = static_cast<redisReply*>(reply);
    const bool is_error = r->type == REDIS_REPLY_ERROR;
    const std::string text = is_error && r->str ? protocol::peer_text(std::string_view(r->str, r->len)) : std::string();
    self->on_reply(is_error, text);
    freeReplyObject(reply);
    if (self->state_ == State::kFailed) return;
  }
}

void MarkerClient::on_reply(bool is_error, const std::string& text) {
  if (replies_due_ > 0) replies_due_--;
  if (is_error) {
    fail((state_ == State::kAuth ? "the master refused AUTH: " : "the master refused PUBLISH: ") + text);
    return;
  }
  if (state_ == State::kAuth) {
    state_ = State::kReady;
    if (callbacks_.on_ready) callbacks_.on_ready();
  }
}

void MarkerClient::close() {
  if (state_ == State::kFailed) return;
  callbacks_ = {};
  fail("closed");
}

void MarkerClient::fail(const std::string& why) {
  if (state_ == State::kFailed) return;
  state_ = State::kFailed;
  if (tcp_) {
    tcp_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    tcp_ = nullptr;
  }
  if (callbacks_.on_failed) callbacks_.on_failed(why);
}

}  // namespace psync::proxy
