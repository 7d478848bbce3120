// The HTTP status endpoint: GET /status (JSON), GET /healthz; anything else
// 404 with a JSON error. One request per connection.
#pragma once

#include <uv.h>

#include <string>
#include <string_view>

namespace psync::proxy {

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

class StatusServer {
 public:
  explicit StatusServer(Proxy& proxy);
  ~StatusServer();
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // false (with error set) when the address cannot be bound.
  bool start(const std::string& host, int port, std::string& error);
  void stop();

  // Builds the whole HTTP response for a request (pure: tested and fuzzed).
  static std::string respond(Proxy* proxy, const std::string& method, const std::string& url);

 private:
  static void on_connection(uv_stream_t* server, int status);

  Proxy& proxy_;
  uv_tcp_t server_{};
  bool started_ = false;
};

}  // namespace psync::proxy
