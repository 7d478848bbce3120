#include <doctest/doctest.h>
#include <uv.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "proxy/proxy.h"
#include "proxy/status_http.h"

using namespace psync::proxy;

namespace {
// A proxy that is built but not started: no socket, no file.
struct IdleProxy {
  uv_loop_t loop{};
  std::unique_ptr<Proxy> proxy;
  IdleProxy() {
    uv_loop_init(&loop);
    Config c;
    c.upstream.host = "127.0.0.1";
    c.upstream.port = 1;
    c.has_upstream = true;
    c.requirepass = "top-secret-pass";
    c.masterauth = "master-secret-pass";
    proxy = std::make_unique<Proxy>(&loop, c);
  }
  ~IdleProxy() {
    proxy.reset();
    uv_walk(&loop, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};
}  // namespace

TEST_CASE("metrics: valid Prometheus text, every family described, counters end in _total") {
  IdleProxy p;
  std::string text = p.proxy->metrics_text();
  std::istringstream in(text);
  std::string line;
  std::map<std::string, std::string> types;
  std::set<std::string> helped, sampled;
  const std::regex sample(R"(^([a-z_:][a-z0-9_:]*)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|NaN)$)");
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      types[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
    } else {
      std::smatch m;
      CAPTURE(line);
      REQUIRE(std::regex_match(line, m, sample));
      sampled.insert(m[1]);
    }
  }
  for (const auto& name : sampled) {
    CAPTURE(name);
    CHECK(helped.count(name) == 1);
    REQUIRE(types.count(name) == 1);
    CHECK(name.rfind("psync_proxy_", 0) == 0);
    if (types[name] == "counter") CHECK(name.size() > 6);
    if (types[name] == "counter") CHECK(name.substr(name.size() - 6) == "_total");
  }
  CHECK(sampled.count("psync_proxy_upstream_link_up") == 1);
  CHECK(sampled.count("psync_proxy_sync_full_total") == 1);
  CHECK(sampled.count("psync_proxy_log_disk_bytes") == 1);
  CHECK(text.find("psync_proxy_upstream_link_up 0\n") != std::string::npos);
  CHECK(text.find("psync_proxy_snapshot_bytes 0\n") != std::string::npos);
}

TEST_CASE("status endpoints reveal no password") {
  IdleProxy p;
  for (const char* path : {"/status", "/metrics", "/", "/healthz"}) {
    std::string r = StatusServer::respond(p.proxy.get(), "GET", path);
    CAPTURE(path);
    CHECK(r.find("top-secret-pass") == std::string::npos);
    CHECK(r.find("master-secret-pass") == std::string::npos);
  }
  CHECK(StatusServer::respond(p.proxy.get(), "GET", "/healthz").rfind("HTTP/1.1 503", 0) == 0);
  std::string page = StatusServer::respond(p.proxy.get(), "GET", "/");
  CHECK(page.rfind("HTTP/1.1 200 OK", 0) == 0);
  CHECK(page.find("text/html") != std::string::npos);
  // Self-contained: nothing loaded from elsewhere.
  CHECK(page.find("src=\"http") == std::string::npos);
  CHECK(page.find("href=\"http") == std::string::npos);
}
