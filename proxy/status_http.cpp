#include "proxy/status_http.h"

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/proxy.h"
#include "proxy/tls.h"

namespace psync::proxy {

namespace {

constexpr uint64_t kRequestTimeoutMs = 5'000;
constexpr uint64_t kBusyLogEveryMs = 10'000;

std::string http_response(int code, const char* reason, const std::string& content_type,
                          const std::string& body, bool head) {
  std::string r = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\n";
  r += "Content-Type: " + content_type + "\r\n";
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!head) r += body;
  return r;
}

std::string json_error(int code, const char* reason, const std::string& message, bool head) {
  nlohmann::json j = {{"error", message}};
  return http_response(code, reason, "application/json", j.dump() + "\n", head);
}

// One HTTP connection: read one request, answer, close.
struct Connection {
  uv_tcp_t tcp;
  uv_timer_t timer;
  Proxy* proxy;
  // The server's count, decremented when the close starts: the peer may see
  // the close (and connect again) before the close callback runs.
  int* open_connections;
  std::string received;
  bool answered = false;
  int open_handles = 2;
  // --status-tls: OpenSSL between memory buffers and the libuv stream.
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // what the peer sent, for OpenSSL to decrypt (owned by ssl)
  BIO* wbio = nullptr;  // what OpenSSL has for the peer (owned by ssl)
  bool handshake_done = false;

  ~Connection() {
    if (ssl) SSL_free(ssl);
  }

  // Bytes to the peer as they are; close_after: then close.
  void write_raw(std::string data, bool close_after) {
    struct Write {
      uv_write_t req;
      std::string data;
      Connection* conn;
      bool close_after;
    };
    if (data.empty()) {
      if (close_after) close();
      return;
    }
    auto* w = new Write{{}, std::move(data), this, close_after};
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1, [](uv_write_t* req, int status) {
      auto* w = static_cast<Write*>(req->data);
      if (w->close_after || status < 0) w->conn->close();
      delete w;
    });
    if (rc != 0) {
      delete w;
      close();
    }
  }

  // What OpenSSL has for the peer.
  std::string drain_tls() {
    std::string out;
    char buf[4096];
    int n;
    while ((n = BIO_read(wbio, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

  // TLS bytes in; false once the connection is closing. Plaintext goes to received.
  bool tls_in(const char* data, size_t len) {
    BIO_write(rbio, data, static_cast<int>(len));
    if (!handshake_done) {
      ERR_clear_error();
      const int r = SSL_do_handshake(ssl);
      if (r != 1) {
        const int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
          write_raw(drain_tls(), false);
          return true;
        }
        proxy->counters().tls_handshake_failures++;
        LOG_WARN("status", "TLS handshake on the status port failed: %s", TlsContext::errors().c_str());
        write_raw(drain_tls(), true);  // the alert, then close
        answered = true;
        return false;
      }
      handshake_done = true;
      write_raw(drain_tls(), false);
    }
    char buf[4096];
    int n;
    while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) received.append(buf, static_cast<size_t>(n));
    return true;
  }

  static void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
    static char scratch[4096];  // the loop is single-threaded; copied at once
    *buf = uv_buf_init(scratch, sizeof scratch);
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Connection*>(s->data);
    if (c->answered) return;
    if (n < 0) {
      c->close();
      return;
    }
    if (c->ssl) {
      if (!c->tls_in(buf->base, static_cast<size_t>(n))) return;
    } else {
      c->received.append(buf->base, static_cast<size_t>(n));
    }
    if (c->received.size() > kMaxHttpRequest) {
      c->answer(json_error(431, "Request Header Fields Too Large", "request too large", false));
      return;
    }
    HttpRequest req = parse_http_request(c->received);
    if (!req.error.empty()) {
      c->answer(json_error(400, "Bad Request", "bad HTTP request: " + req.error, false));
    } else if (req.complete) {
      c->answer(StatusServer::respond(c->proxy, req.method, req.url));
    }
  }

  void answer(std::string response) {
    answered = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
    if (ssl) {
      // A memory BIO takes it all; then close_notify.
      SSL_write(ssl, response.data(), static_cast<int>(response.size()));
      SSL_shutdown(ssl);
      response = drain_tls();
    }
    write_raw(std::move(response), true);
  }

  void close() {
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp))) return;
    --*open_connections;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_closed);
  }

  static void on_closed(uv_handle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    if (--c->open_handles > 0) return;
    delete c;
  }
};

struct ParseState {
  HttpRequest* req;
  bool headers_done = false;
};

}  // namespace

StatusServer::StatusServer(Proxy& proxy) : proxy_(proxy) {}
StatusServer::~StatusServer() = default;

bool StatusServer::start(const std::string& host, int port, std::string& error) {
  make_listener();
  return listener_->listen(host, static_cast<uint16_t>(port), 64, error);
}

bool StatusServer::adopt(int fd, std::string& error) {
  make_listener();
  return listener_->adopt(fd, error);
}

int StatusServer::listener_fd() const { return listener_ ? listener_->fd() : -1; }

void StatusServer::make_listener() {
  listener_ = std::make_unique<Listener>(
      proxy_.loop(), "status", "--status-bind",
      json_error(503, "Service Unavailable", "psync-proxy is out of file descriptors", false),
      [this] { proxy_.counters().rejected_out_of_fds++; }, [this](int fd, const sockaddr_storage&) { on_connection(fd); });
}

void StatusServer::stop() {
  if (listener_) listener_->close();
}

void StatusServer::on_connection(int fd) {
  if (open_connections_ >= kMaxConnections) {
    ++refused_busy_;
    uint64_t now = now_ms();
    if (last_busy_log_ms_ == 0 || now - last_busy_log_ms_ >= kBusyLogEveryMs) {
      LOG_WARN("status", "%d status connections open at once: refusing more with 503 (%llu so far)",
               kMaxConnections, static_cast<unsigned long long>(refused_busy_));
      last_busy_log_ms_ = now;
    }
    refuse_connection(fd, json_error(503, "Service Unavailable",
                                     "too many status connections at once (" +
                                         std::to_string(kMaxConnections) + "); try again",
                                     false));
    return;
  }
  auto* c = new Connection;
  c->proxy = &proxy_;
  c->open_connections = &open_connections_;
  ++open_connections_;
  if (proxy_.config().status_tls) {
    const TlsContext* tls = proxy_.tls_context();
    c->ssl = tls ? tls->accept_in_memory(c->rbio, c->wbio) : nullptr;
    if (!c->ssl) {
      LOG_WARN("status", "cannot start TLS on the status port: %s", TlsContext::errors().c_str());
      --open_connections_;
      delete c;
      ::close(fd);
      return;
    }
  }
  uv_tcp_init(proxy_.loop(), &c->tcp);
  uv_timer_init(proxy_.loop(), &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  if (uv_tcp_open(&c->tcp, fd) != 0) {
    ::close(fd);
    c->close();
    return;
  }
  uv_timer_start(&c->timer, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->close(); },
                 kRequestTimeoutMs, 0);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), Connection::on_alloc, Connection::on_read);
}

HttpRequest parse_http_request(std::string_view bytes) {
  HttpRequest req;
  ParseState st{&req};
  http_parser parser;
  http_parser_init(&parser, HTTP_REQUEST);
  parser.data = &st;
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_url = [](http_parser* p, const char* at, size_t len) {
    static_cast<ParseState*>(p->data)->req->url.append(at, len);
    return 0;
  };
  settings.on_headers_complete = [](http_parser* p) {
    auto* st = static_cast<ParseState*>(p->data);
    st->headers_done = true;
    st->req->method = http_method_str(static_cast<http_method>(p->method));
    return 1;  // no body is read
  };
  size_t used = http_parser_execute(&parser, &settings, bytes.data(), bytes.size());
  if (st.headers_done) {
    req.complete = true;
  } else if (parser.http_errno != HPE_OK || used != bytes.size()) {
    req.error = http_errno_description(static_cast<http_errno>(parser.http_errno));
    req.url.clear();
  }
  return req;
}

std::string StatusServer::respond(Proxy* proxy, const std::string& method, const std::string& url) {
  bool head = method == "HEAD";
  if (method != "GET" && !head) {
    return json_error(405, "Method Not Allowed", "only GET is supported", false);
  }
  std::string path = url.substr(0, url.find('?'));
  if (path == "/status") {
    return http_response(200, "OK", "application/json", proxy ? proxy->status_json() : "{}", head);
  }
  if (path == "/history") {
    return http_response(200, "OK", "application/json", proxy ? proxy->history_json() : "{}\n", head);
  }
  if (path == "/metrics") {
    return http_response(200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                         proxy ? proxy->metrics_text() : "", head);
  }
  if (path == "/" || path == "/index.html") {
    return http_response(200, "OK", "text/html; charset=utf-8", status_page_html(), head);
  }
  if (path == "/healthz") {
    // Ready once there is a snapshot to serve replicas from, and only the
    // active: a Service or a load balancer sends replicas to it alone.
    if (proxy && !proxy->superseded_by().empty()) {
      return http_response(503, "Service Unavailable", "text/plain",
                           "superseded: a standby took this lineage over (now " + proxy->superseded_by() + ")\n",
                           head);
    }
    if (proxy && proxy->is_standby()) {
      return http_response(503, "Service Unavailable", "text/plain",
                           "standby: following the active at " + proxy->config().standby_of.str() + "\n", head);
    }
    if (proxy && !proxy->snapshot()) {
      return http_response(503, "Service Unavailable", "text/plain",
                           "not ready: no snapshot of the upstream yet\n", head);
    }
    return http_response(200, "OK", "text/plain", "ok\n", head);
  }
  return json_error(404, "Not Found", "no such path; try /, /status, /history, /metrics or /healthz", head);
}

}  // namespace psync::proxy
