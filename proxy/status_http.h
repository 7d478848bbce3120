// The HTTP status endpoint: GET /status (JSON), GET /healthz; anything else
// 404 with a JSON error. One request per connection.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace psync::proxy {

class Listener;
class Proxy;

// One HTTP request read from the bytes received so far (pure: unit tested
// and fuzzed). The endpoint answers once `complete` or `error` is set.
struct HttpRequest {
  bool complete = false;  // the request line and headers are all there
  std::string error;      // the bytes are not an HTTP request (answer 400)
  std::string method;
  std::string url;
};
constexpr size_t kMaxHttpRequest = 8 * 1024;  // larger: 431
HttpRequest parse_http_request(std::string_view bytes);

// GET /: a self-contained page (no external assets) that renders /status.
const std::string& status_page_html();

// Connections are accepted by a Listener (proxy/listener.h: no busy loop when
// out of file descriptors, a 503 instead). At most kMaxConnections are open at
// once: one past it gets 503 at once and is closed. Each one is closed after
// its answer or after 5 s, so a client holding connections open delays
// others by 5 s at most, and never costs the replica port descriptors.
class StatusServer {
 public:
  static constexpr int kMaxConnections = 64;

  explicit StatusServer(Proxy& proxy);
  ~StatusServer();
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // false (with error set) when the address cannot be bound.
  bool start(const std::string& host, int port, std::string& error);
  // The same on a listening socket handed over at a live restart.
  bool adopt(int fd, std::string& error);
  // The listening socket (-1 when not listening).
  int listener_fd() const;
  void stop();

  // Builds the whole HTTP response for a request (pure: tested and fuzzed).
  static std::string respond(Proxy* proxy, const std::string& method, const std::string& url);

 private:
  void make_listener();
  void on_connection(int fd);

  Proxy& proxy_;
  std::unique_ptr<Listener> listener_;
  int open_connections_ = 0;
  uint64_t refused_busy_ = 0;  // past kMaxConnections (logged now and then)
  uint64_t last_busy_log_ms_ = 0;
};

}  // namespace psync::proxy
