// What operators' tools send to the replica port, answered as a Redis 7
// master answers it, where that makes sense for a proxy that holds no data:
// redis-cli (interactive mode sends COMMAND DOCS), monitoring agents and
// Prometheus's redis_exporter (CLIENT SETNAME, CONFIG GET *, INFO ALL,
// LATENCY LATEST, SLOWLOG LEN / GET, CLIENT LIST), client libraries (HELLO),
// and WAIT, which the cut-over from the legacy master relies on (README
// "Moving off the legacy master").
//
// One function per command, called from ReplicaSession::dispatch; each
// returns the whole reply (RESP2). The pure parts (glob matching, the CLIENT
// LIST line, the CONFIG GET table, the command table) are unit tested
// (tests/unit/proxy_admin_commands.cpp).
//
// Replies are dropped once the client is a replica (ReplicaSession::reply),
// as a Redis master never answers its replicas: these commands are for
// clients.
//
// Data commands (GET, DBSIZE, ...) keep their clear error: the proxy holds
// no dataset, only a snapshot file and a log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace psync::proxy {

struct Config;
class ReplicaSession;
class SessionHost;

namespace admin {

// ----- Pure parts -----

// Redis's glob (stringmatchlen): '*', '?', '[abc]', '[^a-z]', '\x' for a
// literal x. Linear in the pattern times the text at worst (no exponential
// backtracking, whatever a client sends).
bool glob_match(std::string_view pattern, std::string_view text, bool nocase = true);

// Redis accepts names of '!'..'~' only (no spaces, no newlines); the proxy
// also caps their length so that 1000 named clients hold at most 1 MB.
constexpr size_t kMaxClientName = 1024;
bool valid_client_name(std::string_view name);

// One line of CLIENT LIST / CLIENT INFO, in Redis 7.0's field order.
struct ClientLine {
  uint64_t id = 0;
  std::string addr;   // ip:port of the peer
  std::string laddr;  // ip:port of the proxy's end
  int fd = -1;
  std::string name;
  uint64_t age_s = 0;
  uint64_t idle_s = 0;
  std::string flags;  // "S" replica, "b" blocked in WAIT, "N" none
  uint64_t qbuf = 0;  // bytes read and not yet executed
  uint64_t omem = 0;  // bytes of replies waiting
  uint64_t tot_mem = 0;
  std::string events;  // "r", "w", "rw" or ""
  std::string cmd;     // last command: "client|list", "replconf", "NULL"
  std::string user = "default";
};
// Without the final "\n" (CLIENT LIST ends each line with one).
std::string format_client_line(const ClientLine& c);

// CONFIG GET: the proxy's settings under Redis's names, where one maps
// (port, bind, maxclients, repl-backlog-size from --backlog-size, repl-timeout
// from --replica-timeout, dir, ...). Passwords are never shown: requirepass
// and masterauth are "" when unset and "(hidden)" when set.
using Settings = std::vector<std::pair<std::string, std::string>>;
Settings config_settings(const Config& config);
// The flat name/value array for the patterns (each setting once, in table
// order, whichever patterns match it; none: an empty array).
std::string config_get_reply(const Settings& settings, const std::vector<std::string>& patterns);

// The command table (COMMAND COUNT / INFO / DOCS / LIST): every command the
// proxy answers. The name shown in CLIENT LIST cmd= for a request:
// "client|list" for a known subcommand, the lower-case name of a known
// command, "NULL" for anything else (as Redis shows an unknown command).
// Points into the table (static storage).
const char* command_label(const std::vector<std::string>& args);
size_t command_count();

// The error to a command the proxy does not answer, naming those it does.
std::string unknown_command_reply(std::string_view name);

// WAIT numreplicas timeout: "" and the values, or the error reply.
struct WaitArgs {
  int64_t numreplicas = 0;
  uint64_t timeout_ms = 0;  // 0: no timeout
};
std::string parse_wait(const std::vector<std::string>& args, WaitArgs& out);
// Of acked offsets sorted in ascending order, how many are >= target.
int64_t count_at_least(const std::vector<int64_t>& sorted, uint64_t target);

// ----- One function per command: the reply -----

std::string cmd_client(ReplicaSession& self, const SessionHost& host, const std::vector<std::string>& args);
std::string cmd_config(const SessionHost& host, const std::vector<std::string>& args);
std::string cmd_command(const std::vector<std::string>& args);
std::string cmd_hello(ReplicaSession& self, const std::vector<std::string>& args);
std::string cmd_latency(const std::vector<std::string>& args);
std::string cmd_slowlog(const std::vector<std::string>& args);
std::string cmd_time(const std::vector<std::string>& args);
std::string cmd_echo(const std::vector<std::string>& args);
// WAIT: the reply now, or "" when the client is blocked (self.block_in_wait;
// the reply comes with ReplicaSession::finish_wait).
std::string cmd_wait(ReplicaSession& self, SessionHost& host, const std::vector<std::string>& args);

}  // namespace admin
}  // namespace psync::proxy
