#include "proxy/config.h"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "protocol/numbers.h"

namespace psync::proxy {

const char* upstream_mode_name(UpstreamMode m) {
  switch (m) {
    case UpstreamMode::kAuto: return "auto";
    case UpstreamMode::kSync: return "sync";
    case UpstreamMode::kPsync: return "psync";
  }
  return "?";
}

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool parse_host_port(const std::string& s, HostPort& out) {
  std::string host, port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || s.find(':') != colon) return false;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  auto p = protocol::parse_u64(port);
  if (host.empty() || !p || *p == 0 || *p > 65535) return false;
  out.host = host;
  out.port = static_cast<uint16_t>(*p);
  return true;
}

namespace {

int usage_error(const std::string& msg) {
  fprintf(stderr, "psync-proxy: %s (see --help)\n", msg.c_str());
  return 2;
}

}  // namespace

ParseResult parse_args(int argc, char** argv) {
  ParseResult r;
  Config& c = r.config;
  CLI::App app{
      "psync-proxy: replicates a SYNC-only Redis master once and serves Redis replicas\n"
      "with PSYNC (partial resync) from its own log and snapshot.",
      "psync-proxy"};
  app.get_formatter()->column_width(34);
  std::string upstream, backlog = "256mb", log_level = "info";
  int port = c.port, status_port = c.status_port;
  app.add_option("--upstream", upstream, "Legacy master to replicate, HOST:PORT (required)");
  app.add_option("--masterauth", c.masterauth, "Password for AUTH to the upstream");
  app.add_option("--masteruser", c.masteruser, "User name for AUTH to the upstream (Redis 6+ ACL)");
  app.add_option("--bind", c.bind, "Address replicas connect to")->capture_default_str();
  app.add_option("--port", port, "Port replicas connect to")->capture_default_str();
  app.add_option("--status-bind", c.status_bind,
                 "Address of the HTTP status endpoint (default: --bind)");
  app.add_option("--status-port", status_port, "Port of the HTTP status endpoint (0: off)")
      ->capture_default_str();
  app.add_option("--dir", c.dir, "Data directory: snapshot and replication log")
      ->capture_default_str();
  app.add_option("--backlog-size", backlog,
                 "Bytes of log kept for partial resync beyond what a full resync needs "
                 "(units: kb, mb, gb)")
      ->capture_default_str();
  app.add_option("--requirepass", c.requirepass, "Password replicas must AUTH with");
  app.add_option("--requireuser", c.requireuser,
                 "User name accepted in AUTH <user> <pass> (a replica's masteruser)")
      ->capture_default_str();
  std::string upstream_mode = "auto", protected_mode = "yes";
  app.add_option("--upstream-mode", upstream_mode,
                 "auto (PSYNC where the master has it, else SYNC), sync or psync")
      ->capture_default_str();
  app.add_option("--protected-mode", protected_mode,
                 "yes: with no --requirepass and a non-loopback --bind, refuse non-loopback clients")
      ->capture_default_str();
  app.add_option("--max-clients", c.max_clients, "Most replica-port connections at once")
      ->capture_default_str();
  app.add_option("--handshake-timeout", c.handshake_timeout_s,
                 "Seconds a client may take to become a replica before it is closed")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
  app.add_option("--upstream-timeout", c.upstream_timeout_s,
                 "Seconds without a byte from the upstream before the link counts as lost")
      ->capture_default_str();
  bool version = false;
  app.add_flag("--version", version, "Print the version and exit");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    printf("%s", app.help().c_str());
    r.exit = true;
    return r;
  } catch (const CLI::ParseError& e) {
    r.exit = true;
    r.exit_code = usage_error(e.what());
    return r;
  }
  if (version) {
    printf("psync-proxy %s\n", PSYNC_PROXY_VERSION);
    r.exit = true;
    return r;
  }
  auto fail = [&](const std::string& msg) {
    r.exit = true;
    r.exit_code = usage_error(msg);
    return r;
  };
  if (upstream.empty()) {
    return fail("--upstream HOST:PORT is required (deploy/run.sh with no flags runs a demo)");
  }
  if (!parse_host_port(upstream, c.upstream)) {
    return fail("--upstream: expected HOST:PORT, got '" + upstream + "'");
  }
  c.has_upstream = true;
  if (port <= 0 || port > 65535) return fail("--port: expected 1-65535, got " + std::to_string(port));
  if (status_port < 0 || status_port > 65535) {
    return fail("--status-port: expected 0-65535, got " + std::to_string(status_port));
  }
  c.port = static_cast<uint16_t>(port);
  c.status_port = static_cast<uint16_t>(status_port);
  if (c.status_bind.empty()) c.status_bind = c.bind;
  auto size = protocol::parse_memory_size(backlog);
  if (!size) return fail("--backlog-size: expected a size like 1048576, 512kb or 256mb, got '" + backlog + "'");
  c.backlog_size = *size;
  auto level = parse_log_level(log_level);
  if (!level) return fail("--log-level: expected debug, info, warn or error, got '" + log_level + "'");
  c.log_level = *level;
  if (c.dir.empty()) return fail("--dir: must not be empty");
  if (!(c.upstream_timeout_s > 0)) return fail("--upstream-timeout: must be > 0");
  if (!c.masteruser.empty() && c.masterauth.empty()) return fail("--masteruser needs --masterauth");
  if (upstream_mode == "auto") {
    c.upstream_mode = UpstreamMode::kAuto;
  } else if (upstream_mode == "sync") {
    c.upstream_mode = UpstreamMode::kSync;
  } else if (upstream_mode == "psync") {
    c.upstream_mode = UpstreamMode::kPsync;
  } else {
    return fail("--upstream-mode: expected auto, sync or psync, got '" + upstream_mode + "'");
  }
  if (protected_mode == "yes") {
    c.protected_mode = true;
  } else if (protected_mode == "no") {
    c.protected_mode = false;
  } else {
    return fail("--protected-mode: expected yes or no, got '" + protected_mode + "'");
  }
  if (c.max_clients == 0) return fail("--max-clients: must be at least 1");
  if (!(c.handshake_timeout_s > 0)) return fail("--handshake-timeout: must be > 0");
  if (c.requireuser.empty()) return fail("--requireuser: must not be empty");
  return r;
}

}  // namespace psync::proxy
