// A listening TCP socket polled by libuv; connections are accepted with
// accept4(2) as plain non-blocking descriptors (the replica port sends with
// sendfile(2); the status port wraps them in a uv_tcp_t).
//
// Out of file descriptors (EMFILE, ENFILE), as nginx does: one descriptor is
// held in reserve (/dev/null). It is given back to accept the connection that
// could not be accepted, which gets `refusal` written and is closed at once.
// Invariant: every connection waiting in the listen queue is either accepted
// or refused, so the level-triggered poll never fires again for the same
// connection (no busy loop). When the reserve cannot be taken back (another
// open took the descriptor), or accept fails in another way, the listener
// stops polling for kPauseMs and tries again. The log gets at most one
// warning per kLogEveryMs (counting the failures in between), and one line
// when connections are accepted again.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace psync::proxy {

// Writes `reply` to a just-accepted socket (best effort: a fresh socket's
// buffer takes a short reply at once), reads what the peer already sent (so
// that close sends FIN after the reply, not a RST that could drop it), closes.
void refuse_connection(int fd, std::string_view reply);

// A socket address as printable IP and port ("?" and 0 for a family that is
// neither IPv4 nor IPv6).
void address_parts(const sockaddr_storage& ss, std::string& ip, int& port);

class Listener {
 public:
  using OnAccept = std::function<void(int fd, const sockaddr_storage& peer)>;
  using OnRefused = std::function<void()>;

  // what: for log lines and errors ("replicas", "status"); bind_flag: the
  // option naming the address ("--bind"); refusal: written to connections
  // refused for lack of descriptors; on_refused: called for each of those.
  Listener(uv_loop_t* loop, std::string what, std::string bind_flag, std::string refusal,
           OnRefused on_refused, OnAccept on_accept);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds, listens and starts accepting. false with error set.
  bool listen(const std::string& host, uint16_t port, int backlog, std::string& error);
  // The same with a socket already listening (handed over by the previous
  // image at a live restart): owned from here. false with error set.
  bool adopt(int fd, std::string& error);
  // The listening socket (-1 when closed).
  int fd() const { return fd_; }
  // Stops accepting and closes the socket (its handles close on the loop).
  void close();

  static constexpr uint64_t kPauseMs = 200;
  static constexpr uint64_t kLogEveryMs = 10'000;

 private:
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_pause_over(uv_timer_t* timer);
  static void on_handle_closed(uv_handle_t* handle);
  void start_polling();
  void accept_all();
  // accept4 failed with err: refuses the connection with the reserve, or
  // pauses. true when accepting may go on.
  bool accept_failed(int err);
  void pause();
  void note_failure(int err);
  void note_accepted();

  uv_loop_t* loop_;
  std::string what_;
  std::string bind_flag_;
  std::string refusal_;
  OnRefused on_refused_;
  OnAccept on_accept_;

  int fd_ = -1;
  int reserve_fd_ = -1;
  uv_poll_t poll_{};
  uv_timer_t pause_timer_{};
  bool handles_ = false;  // poll_ and pause_timer_ initialized
  int open_handles_ = 0;
  bool closed_ = false;

  // Rate-limited reporting of a run of failures.
  bool failing_ = false;          // since the last failed accept, none succeeded
  uint64_t last_log_ms_ = 0;      // last warning line
  uint64_t last_again_ms_ = 0;    // last "accepting again" line
  uint64_t failures_since_log_ = 0;
  uint64_t failures_total_ = 0;   // in the current run of failures
};

}  // namespace psync::proxy
