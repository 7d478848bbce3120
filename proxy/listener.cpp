#include "proxy/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/log.h"
#include "proxy/proxy.h"

namespace psync::proxy {

namespace {
const char* kComponent = "proxy";
constexpr int kAcceptsPerEvent = 64;  // then other handles get their turn

int open_reserve() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

std::string fd_limit_text() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return "?";
  if (r.rlim_cur == RLIM_INFINITY) return "unlimited";
  return std::to_string(static_cast<unsigned long long>(r.rlim_cur));
}
}  // namespace

void address_parts(const sockaddr_storage& ss, std::string& ip, int& port) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  } else {
    port = 0;
  }
  ip = buf;
}

void refuse_connection(int fd, std::string_view reply) {
  ssize_t n = ::write(fd, reply.data(), reply.size());
  (void)n;
  char buf[4096];
  for (int i = 0; i < 4 && ::read(fd, buf, sizeof buf) > 0; ++i) {
  }
  ::close(fd);
}

Listener::Listener(uv_loop_t* loop, std::string what, std::string bind_flag, std::string refusal,
                   OnRefused on_refused, OnAccept on_accept)
    : loop_(loop),
      what_(std::move(what)),
      bind_flag_(std::move(bind_flag)),
      refusal_(std::move(refusal)),
      on_refused_(std::move(on_refused)),
      on_accept_(std::move(on_accept)) {}

Listener::~Listener() {
  // The handles are closed (the loop ran to its end) before the owner goes.
  if (!handles_ && fd_ >= 0) ::close(fd_);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

bool Listener::listen(const std::string& host, uint16_t port, int backlog, std::string& error) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    addr_len = sizeof *a4;
  } else if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    addr_len = sizeof *a6;
  } else {
    error = bind_flag_ + ": not an IP address: " + host;
    return false;
  }
  std::string where = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  fd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error = "cannot listen for " + what_ + " on " + where + ":" + std::to_string(port) + ": " + strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 || ::listen(fd_, backlog) != 0) {
    error = "cannot listen for " + what_ + " on " + where + ":" + std::to_string(port) + ": " + strerror(errno);
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  start_polling();
  return true;
}

bool Listener::adopt(int fd, std::string& error) {
  int listening = 0;
  socklen_t len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
    error = "descriptor " + std::to_string(fd) + " handed over for " + what_ + " is not a listening socket";
    return false;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    error = "cannot make the " + what_ + " listener non-blocking: " + strerror(errno);
    return false;
  }
  fd_ = fd;
  start_polling();
  return true;
}

void Listener::start_polling() {
  reserve_fd_ = open_reserve();
  uv_poll_init_socket(loop_, &poll_, fd_);
  uv_timer_init(loop_, &pause_timer_);
  poll_.data = this;
  pause_timer_.data = this;
  handles_ = true;
  open_handles_ = 2;
  uv_poll_start(&poll_, UV_READABLE, on_poll);
}

void Listener::close() {
  if (closed_) return;
  closed_ = true;
  if (!handles_) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    return;
  }
  uv_poll_stop(&poll_);
  uv_timer_stop(&pause_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&pause_timer_), on_handle_closed);
}

void Listener::on_handle_closed(uv_handle_t* handle) {
  auto* self = static_cast<Listener*>(handle->data);
  if (--self->open_handles_ > 0) return;
  // The poll handle is gone: the socket may be closed now.
  ::close(self->fd_);
  self->fd_ = -1;
  self->handles_ = false;
}

void Listener::on_poll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<Listener*>(handle->data);
  if (self->closed_) return;
  if (status < 0) {
    self->note_failure(-status);
    self->pause();
    return;
  }
  self->accept_all();
}

void Listener::on_pause_over(uv_timer_t* timer) {
  auto* self = static_cast<Listener*>(timer->data);
  if (self->closed_) return;
  if (self->reserve_fd_ < 0) self->reserve_fd_ = open_reserve();
  uv_poll_start(&self->poll_, UV_READABLE, on_poll);
}

void Listener::pause() {
  uv_poll_stop(&poll_);
  uv_timer_start(&pause_timer_, on_pause_over, kPauseMs, 0);
}

void Listener::accept_all() {
  for (int i = 0; i < kAcceptsPerEvent && !closed_; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      if (failing_) note_accepted();
      on_accept_(fd, ss);
      continue;
    }
    int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (!accept_failed(err)) return;
  }
}

bool Listener::accept_failed(int err) {
  if ((err == EMFILE || err == ENFILE) && reserve_fd_ >= 0) {
    ::close(reserve_fd_);
    reserve_fd_ = -1;
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int accept_err = errno;
    if (fd >= 0) {
      note_failure(err);
      if (on_refused_) on_refused_();
      refuse_connection(fd, refusal_);
    }
    reserve_fd_ = open_reserve();
    if (reserve_fd_ >= 0) {
      // One connection fewer in the queue: go on. Or the queue is empty
      // (accept4 says EMFILE before it looks): nothing to do until the next one.
      if (fd >= 0) return true;
      if (accept_err == EAGAIN || accept_err == EWOULDBLOCK) return false;
    }
  }
  note_failure(err);
  pause();
  return false;
}

void Listener::note_failure(int err) {
  uint64_t now = now_ms();
  ++failures_since_log_;
  if (!failing_) {
    failing_ = true;
    failures_total_ = 0;
  }
  ++failures_total_;
  if (last_log_ms_ != 0 && now - last_log_ms_ < kLogEveryMs) return;  // counted for the next line
  std::string more;
  if (failures_since_log_ > 1) {
    more = " (" + std::to_string(failures_since_log_) + " failed accepts since the last report)";
  }
  if (err == EMFILE || err == ENFILE) {
    LOG_WARN(kComponent,
             "cannot accept connections for %s: %s (open files limit %s): new connections get an "
             "error and are closed until descriptors are free; raise the limit (ulimit -n, "
             "LimitNOFILE=) or lower --max-clients%s",
             what_.c_str(), strerror(err), fd_limit_text().c_str(), more.c_str());
  } else {
    LOG_WARN(kComponent, "cannot accept connections for %s: %s: retrying every %llu ms%s", what_.c_str(),
             strerror(err), static_cast<unsigned long long>(kPauseMs), more.c_str());
  }
  last_log_ms_ = now;
  failures_since_log_ = 0;
}

void Listener::note_accepted() {
  failing_ = false;
  uint64_t now = now_ms();
  if (last_again_ms_ != 0 && now - last_again_ms_ < kLogEveryMs) return;
  last_again_ms_ = now;
  LOG_INFO(kComponent, "accepting connections for %s again (after %llu failed accepts)", what_.c_str(),
           static_cast<unsigned long long>(failures_total_));
}

}  // namespace psync::proxy
