#include "proxy/config.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>

#include "protocol/numbers.h"
#include "protocol/request_parser.h"

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

std::string read_secret_file(const std::string& path, std::string& out) {
  constexpr size_t kMaxSecret = 64 * 1024;
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) return "cannot read " + path + ": " + strerror(errno);
  std::string text;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0 && text.size() <= kMaxSecret) text.append(buf, n);
  bool failed = ferror(f) != 0;
  int err = errno;
  fclose(f);
  if (failed) return "cannot read " + path + ": " + strerror(err);
  if (text.size() > kMaxSecret) return path + " is larger than 64 KB: not a password file";
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.empty()) return path + " is empty (it must hold the password)";
  out = std::move(text);
  return "";
}

std::string hide_secret_args(int argc, char** argv) {
  std::string hidden;
  auto note = [&hidden](const char* flag) {
    if (hidden.find(flag) != std::string::npos) return;
    hidden += (hidden.empty() ? "" : ", ") + std::string(flag);
  };
  auto blank = [](char* value) {
    for (char* p = value; *p != '\0'; ++p) *p = 'x';
  };
  for (int i = 1; i < argc; ++i) {
    for (const char* flag : {"--requirepass", "--masterauth"}) {
      size_t len = strlen(flag);
      if (strncmp(argv[i], flag, len) != 0) continue;
      if (argv[i][len] == '\0' && i + 1 < argc) {
        blank(argv[i + 1]);
        note(flag);
      } else if (argv[i][len] == '=') {
        blank(argv[i] + len + 1);
        note(flag);
      }
    }
  }
  return hidden;
}

namespace {

// Applies one option's value to the config; returns "" or what is wrong.
using Apply = std::function<std::string(Config&, const std::string&)>;

struct OptionSpec {
  const char* name;  // without "--"; the same in the config file
  const char* help;
  const char* shown_default;  // for --help ("" for none)
  Apply apply;
};

std::string port_value(const std::string& v, bool zero_ok, uint16_t& out) {
  auto p = protocol::parse_u64(v);
  if (!p || *p > 65535 || (*p == 0 && !zero_ok)) {
    return std::string("expected a port ") + (zero_ok ? "0-65535" : "1-65535") + ", got '" + v + "'";
  }
  out = static_cast<uint16_t>(*p);
  return "";
}

std::string seconds_value(const std::string& v, double& out) {
  char* end = nullptr;
  double d = strtod(v.c_str(), &end);
  if (v.empty() || end == nullptr || *end != '\0' || !(d > 0) || d > 1e6) {
    return "expected a number of seconds > 0, got '" + v + "'";
  }
  out = d;
  return "";
}

// A secret has two forms (NAME and NAME-file): one of them, once (a flag may
// override the config file's value in the same form, as for every option).
std::string secret_conflict(const std::string& from, const std::string& name) {
  if (from.empty() || from == name) return "";
  return "cannot be given with " + from + " (the same password two ways): keep one";
}

std::string set_secret(std::string& secret, std::string& from, const std::string& name, const std::string& v) {
  std::string e = secret_conflict(from, name);
  if (!e.empty()) return e;
  secret = v;
  from = name;
  return "";
}

std::string set_secret_from_file(std::string& secret, std::string& from, const std::string& name,
                                 const std::string& path) {
  std::string e = secret_conflict(from, name);
  if (!e.empty()) return e;
  e = read_secret_file(path, secret);
  if (!e.empty()) return e;
  from = name;
  return "";
}

std::string choice(const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed) {
    if (v == a) return "";
  }
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  return "expected one of " + list + ", got '" + v + "'";
}

const std::vector<OptionSpec>& option_specs() {
  static const std::vector<OptionSpec> specs = {
      {"upstream", "Master to replicate, HOST:PORT (required)", "",
       [](Config& c, const std::string& v) -> std::string {
         if (!parse_host_port(v, c.upstream)) return "expected HOST:PORT, got '" + v + "'";
         c.has_upstream = true;
         return "";
       }},
      {"upstream-mode", "auto (PSYNC where the master has it, else SYNC), sync or psync", "auto",
       [](Config& c, const std::string& v) {
         std::string e = choice(v, {"auto", "sync", "psync"});
         if (e.empty()) {
           c.upstream_mode = v == "auto" ? UpstreamMode::kAuto
                             : v == "sync" ? UpstreamMode::kSync
                                           : UpstreamMode::kPsync;
         }
         return e;
       }},
      {"masterauth", "Password for AUTH to the upstream (briefly visible in the process list: prefer --masterauth-file)",
       "", [](Config& c, const std::string& v) { return set_secret(c.masterauth, c.masterauth_from, "masterauth", v); }},
      {"masterauth-file", "File holding the password for AUTH to the upstream (trailing newline ignored)", "",
       [](Config& c, const std::string& v) {
         return set_secret_from_file(c.masterauth, c.masterauth_from, "masterauth-file", v);
       }},
      {"masteruser", "User name for AUTH to the upstream (Redis 6+ ACL)", "",
       [](Config& c, const std::string& v) { return c.masteruser = v, std::string(); }},
      {"standby-of",
       "Be the standby of the psync-proxy at HOST:PORT (same --upstream): follow its stream with PSYNC, "
       "and take its lineage over once it is unreachable for --standby-timeout",
       "",
       [](Config& c, const std::string& v) -> std::string {
         if (!parse_host_port(v, c.standby_of)) return "expected HOST:PORT, got '" + v + "'";
         c.has_standby_of = true;
         return "";
       }},
      {"standby-timeout", "Seconds the active may be unreachable before a standby takes over", "10",
       [](Config& c, const std::string& v) { return seconds_value(v, c.standby_timeout_s); }},
      {"upstream-timeout", "Seconds without a byte from the upstream before the link counts as lost",
       "60", [](Config& c, const std::string& v) { return seconds_value(v, c.upstream_timeout_s); }},
      {"upstream-connect-timeout",
       "Seconds the name lookup of the upstream host may take, and then the TCP connect, each", "10",
       [](Config& c, const std::string& v) { return seconds_value(v, c.upstream_connect_timeout_s); }},
      {"bind", "Address replicas connect to", "127.0.0.1",
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty()) return "must not be empty";
         c.bind = v;
         return "";
       }},
      {"port", "Port replicas connect to", "6380",
       [](Config& c, const std::string& v) { return port_value(v, false, c.port); }},
      {"status-bind", "Address of the HTTP status endpoint (default: --bind)", "",
       [](Config& c, const std::string& v) { return c.status_bind = v, std::string(); }},
      {"status-port", "Port of the HTTP status endpoint (0: off)", "8380",
       [](Config& c, const std::string& v) { return port_value(v, true, c.status_port); }},
      {"dir", "Data directory: snapshot and replication log", "./psync-data",
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty()) return "must not be empty";
         c.dir = v;
         return "";
       }},
      {"backlog-size",
       "Bytes of log kept for partial resync beyond what a full resync needs (units: kb, mb, gb)",
       "256mb",
       [](Config& c, const std::string& v) -> std::string {
         auto size = protocol::parse_memory_size(v);
         if (!size) return "expected a size like 1048576, 512kb or 256mb, got '" + v + "'";
         c.backlog_size = *size;
         return "";
       }},
      {"snapshot-refresh",
       "yes: take fresh snapshots of the master within the lineage (a second SYNC, placed with PUBLISH markers)",
       "yes",
       [](Config& c, const std::string& v) {
         std::string e = choice(v, {"yes", "no", "off"});
         if (e.empty()) c.snapshot_refresh = v == "yes";
         return e;
       }},
      {"snapshot-refresh-ratio",
       "Refresh once the log since the snapshot is this many times the snapshot's size (and --backlog-size)", "2",
       [](Config& c, const std::string& v) -> std::string {
         char* end = nullptr;
         double r = std::strtod(v.c_str(), &end);
         if (v.empty() || *end != '\0' || !(r > 0) || r > 1e6) return "expected a number above 0, got '" + v + "'";
         c.snapshot_refresh_ratio = r;
         return "";
       }},
      {"snapshot-min-interval", "Seconds between two automatic refreshes at least (each forks the master)", "900",
       [](Config& c, const std::string& v) { return seconds_value(v, c.snapshot_min_interval_s); }},
      {"dir-recover",
       "yes: a data directory that cannot be reopened (a bad manifest, missing files) is discarded with a "
       "warning, and a new lineage starts; no: it is an error (exit 2)",
       "no",
       [](Config& c, const std::string& v) {
         std::string e = choice(v, {"yes", "no"});
         if (e.empty()) c.dir_recover = v == "yes";
         return e;
       }},
      {"log-segment-size", "Bytes per log segment file (units: kb, mb, gb); the log is trimmed a segment at a time",
       "64mb",
       [](Config& c, const std::string& v) -> std::string {
         auto size = protocol::parse_memory_size(v);
         if (!size || *size < 4096) return "expected a size of at least 4kb, got '" + v + "'";
         c.segment_bytes = *size;
         return "";
       }},
      {"tls-port", "A second replica port, with TLS (0: none); needs --tls-cert-file and --tls-key-file", "0",
       [](Config& c, const std::string& v) { return port_value(v, true, c.tls_port); }},
      {"tls-cert-file", "The proxy's certificate (PEM, with its chain) for --tls-port", "",
       [](Config& c, const std::string& v) { return c.tls_cert_file = v, std::string(); }},
      {"tls-key-file", "The private key of --tls-cert-file (PEM)", "",
       [](Config& c, const std::string& v) { return c.tls_key_file = v, std::string(); }},
      {"tls-ca-cert-file", "CA certificates (PEM) that replicas' certificates must be signed by", "",
       [](Config& c, const std::string& v) { return c.tls_ca_cert_file = v, std::string(); }},
      {"tls-auth-clients",
       "yes: a replica on --tls-port must present a certificate signed by --tls-ca-cert-file; optional: "
       "checked if it presents one; no: not asked for",
       "yes",
       [](Config& c, const std::string& v) {
         std::string e = choice(v, {"yes", "no", "optional"});
         if (e.empty()) {
           c.tls_auth_clients = v == "yes" ? TlsAuthClients::kYes
                                : v == "no" ? TlsAuthClients::kNo
                                            : TlsAuthClients::kOptional;
         }
         return e;
       }},
      {"status-tls", "yes: HTTPS on the status port, with the --tls-* certificates and --tls-auth-clients", "no",
       [](Config& c, const std::string& v) {
         std::string e = choice(v, {"yes", "no"});
         if (e.empty()) c.status_tls = v == "yes";
         return e;
       }},
      {"requirepass", "Password replicas must AUTH with (briefly visible in the process list: prefer --requirepass-file)",
       "", [](Config& c, const std::string& v) { return set_secret(c.requirepass, c.requirepass_from, "requirepass", v); }},
      {"requirepass-file", "File holding the password replicas must AUTH with (trailing newline ignored)", "",
       [](Config& c, const std::string& v) {
         return set_secret_from_file(c.requirepass, c.requirepass_from, "requirepass-file", v);
       }},
      {"requireuser", "User name accepted in AUTH <user> <pass> (a replica's masteruser)", "default",
       [](Config& c, const std::string& v) -> std::string {
         if (v.empty()) return "must not be empty";
         c.requireuser = v;
         return "";
       }},
      {"protected-mode",
       "yes: with no --requirepass and a non-loopback --bind, refuse non-loopback clients", "yes",
       [](Config& c, const std::string& v) {
         std::string e = choice(v, {"yes", "no"});
         if (e.empty()) c.protected_mode = v == "yes";
         return e;
       }},
      {"max-clients", "Most replica-port connections at once", "1000",
       [](Config& c, const std::string& v) -> std::string {
         auto n = protocol::parse_u64(v);
         if (!n || *n == 0 || *n > 1000000) return "expected 1-1000000, got '" + v + "'";
         c.max_clients = static_cast<size_t>(*n);
         return "";
       }},
      {"handshake-timeout", "Seconds a client may take to become a replica before it is closed", "60",
       [](Config& c, const std::string& v) { return seconds_value(v, c.handshake_timeout_s); }},
      {"replica-timeout",
       "Seconds an online replica may send no REPLCONF ACK (nor any byte) before it is closed; "
       "clients that never ACK (SYNC) are closed once their host acknowledges nothing for as long",
       "60", [](Config& c, const std::string& v) { return seconds_value(v, c.replica_timeout_s); }},
      {"log-level", "debug, info, warn or error", "info",
       [](Config& c, const std::string& v) -> std::string {
         auto level = parse_log_level(v);
         if (!level) return "expected debug, info, warn or error, got '" + v + "'";
         c.log_level = *level;
         return "";
       }},
      {"log-file", "Write the log to this file (reopened on SIGHUP) instead of stderr", "",
       [](Config& c, const std::string& v) { return c.log_file = v, std::string(); }},
      {"log-format", "text or json (one JSON object per line)", "text",
       [](Config& c, const std::string& v) {
         std::string e = choice(v, {"text", "json"});
         if (e.empty()) c.log_json = v == "json";
         return e;
       }},
  };
  return specs;
}

const OptionSpec* find_spec(const std::string& name) {
  for (const auto& s : option_specs()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

int usage_error(const std::string& msg) {
  fprintf(stderr, "psync-proxy: %s (see --help)\n", msg.c_str());
  return 2;
}

}  // namespace

bool apply_config_file(const std::string& path, Config& config, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "--config: cannot read " + path;
    return false;
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string where = path + ":" + std::to_string(number) + ": ";
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::string> words;
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    // Values may be quoted as in redis.conf: requirepass "with space".
    if (!protocol::split_inline_args(line, words)) {
      error = where + "unbalanced quotes";
      return false;
    }
    if (words.empty()) continue;
    const OptionSpec* spec = find_spec(words[0]);
    if (spec == nullptr || words[0] == "config") {
      error = where + "unknown option '" + words[0] + "'";
      return false;
    }
    if (words.size() != 2) {
      error = where + words[0] + ": expected one value, got " + std::to_string(words.size() - 1);
      return false;
    }
    std::string e = spec->apply(config, words[1]);
    if (!e.empty()) {
      error = where + words[0] + ": " + e;
      return false;
    }
  }
  return true;
}

ParseResult parse_args(int argc, char** argv) {
  ParseResult r;
  Config& c = r.config;
  CLI::App app{
      "psync-proxy: replicates a SYNC-only Redis master once and serves Redis replicas\n"
      "with PSYNC (partial resync) from its own log and snapshot.",
      "psync-proxy"};
  app.get_formatter()->column_width(34);
  std::string config_file;
  app.add_option("--config", config_file,
                 "redis.conf-style file with the same names as the flags (flags override it)");
  // Every option is read as text and applied by its spec, the same way for
  // the command line and the config file.
  std::map<std::string, std::string> given;
  for (const auto& spec : option_specs()) {
    auto* opt = app.add_option(std::string("--") + spec.name, given[spec.name], spec.help);
    if (*spec.shown_default) opt->default_str(spec.shown_default);
  }
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
  if (!config_file.empty()) {
    std::string error;
    if (!apply_config_file(config_file, c, error)) return fail(error);
    c.config_file = config_file;
  }
  for (const auto& spec : option_specs()) {
    if (app.count(std::string("--") + spec.name) == 0) continue;
    std::string e = spec.apply(c, given[spec.name]);
    if (!e.empty()) return fail(std::string("--") + spec.name + ": " + e);
  }
  if (!c.has_upstream) {
    return fail("--upstream HOST:PORT is required (deploy/run.sh with no flags runs a demo)");
  }
  if (c.status_bind.empty()) c.status_bind = c.bind;
  if (!c.masteruser.empty() && c.masterauth.empty()) return fail("--masteruser needs --masterauth");
  if (c.tls_port != 0 || c.status_tls) {
    const char* what = c.tls_port != 0 ? "--tls-port" : "--status-tls yes";
    if (c.tls_cert_file.empty() || c.tls_key_file.empty()) {
      return fail(std::string(what) + " needs --tls-cert-file and --tls-key-file");
    }
    if (c.tls_port != 0 && c.tls_port == c.port) return fail("--tls-port must differ from --port");
    if (c.tls_auth_clients != TlsAuthClients::kNo && c.tls_ca_cert_file.empty()) {
      return fail("--tls-auth-clients yes or optional needs --tls-ca-cert-file (or --tls-auth-clients no)");
    }
  }
  return r;
}

}  // namespace psync::proxy
