// Command-line configuration.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "proxy/log.h"

namespace psync::proxy {

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string str() const;  // "host:port", "[v6]:port"
};

enum class UpstreamMode { kAuto, kSync, kPsync };
enum class TlsAuthClients { kNo, kYes, kOptional };
const char* upstream_mode_name(UpstreamMode m);

struct Config {
  HostPort upstream;
  bool has_upstream = false;
  std::string masterauth;
  std::string masteruser;
  // Which option set requirepass / masterauth ("requirepass" or
  // "requirepass-file", ...; "" for none): the two forms of one secret may
  // not both be given.
  std::string requirepass_from;
  std::string masterauth_from;
  std::string bind = "127.0.0.1";
  uint16_t port = 6380;
  std::string status_bind;  // empty: same as bind
  uint16_t status_port = 8380;
  std::string dir = "./psync-data";
  uint64_t backlog_size = 256ull << 20;
  // Snapshot refresh within a lineage (proxy/refresher.h).
  bool snapshot_refresh = true;
  double snapshot_refresh_ratio = 2;     // refresh once the log since the snapshot exceeds this x its size
  double snapshot_min_interval_s = 900;  // and at most once per this (each is a fork on the master)
  std::string requirepass;
  std::string requireuser = "default";  // user name accepted in AUTH <user> <pass>
  UpstreamMode upstream_mode = UpstreamMode::kAuto;
  bool protected_mode = true;
  size_t max_clients = 1000;
  double handshake_timeout_s = 60;  // a client that is not a replica by then is closed
  double replica_timeout_s = 60;    // an online replica with no ACK (no byte) for this long is closed
  LogLevel log_level = LogLevel::kInfo;
  std::string log_file;            // empty: stderr
  bool log_json = false;           // --log-format json
  std::string config_file;
  double upstream_timeout_s = 60;  // no byte from the upstream for this long: link lost
  double upstream_connect_timeout_s = 10;  // for the name lookup, then again for the TCP connect
  double ping_period_s = 10;       // the proxy's own PING in the stream
  uint64_t segment_bytes = 64ull << 20;
  bool dir_recover = false;  // --dir-recover: a data dir that cannot be trusted is discarded, not an error
  // A standby (proxy/standby.h): follows the active psync-proxy at standby_of
  // with PSYNC, and takes its lineage over once it is unreachable for
  // standby_timeout_s.
  HostPort standby_of;
  bool has_standby_of = false;
  double standby_timeout_s = 10;
  // TLS on a second replica port (proxy/tls.h); 0: none.
  uint16_t tls_port = 0;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_cert_file;
  TlsAuthClients tls_auth_clients = TlsAuthClients::kYes;  // Redis's default
  bool status_tls = false;  // --status-tls: HTTPS on the status port, with the same certificates
};

// What parse_args decided: run with a config, or exit with a code after
// having printed help / version / one clear error line.
struct ParseResult {
  Config config;
  bool exit = false;
  int exit_code = 0;
};

// Flags override the --config file; the file overrides the defaults.
ParseResult parse_args(int argc, char** argv);

// Reads a redis.conf-style file ("name value" lines, '#' comments, names as
// the flags without "--") into config. false with error naming the line.
bool apply_config_file(const std::string& path, Config& config, std::string& error);

// "host:port" or "[v6]:port"; false on a bad value.
bool parse_host_port(const std::string& s, HostPort& out);

// A password file (--requirepass-file, --masterauth-file): its content with
// trailing newlines ("\n", "\r\n") removed. "" or what is wrong, naming the file.
std::string read_secret_file(const std::string& path, std::string& out);

// Overwrites, in argv itself, the values of the flags that carry a password
// (--requirepass, --masterauth, also as --flag=value), so that they no longer
// show in /proc/<pid>/cmdline and ps, as Redis does. Returns the flags it hid
// (", "-separated; "" for none).
std::string hide_secret_args(int argc, char** argv);

}  // namespace psync::proxy
