#include "proxy/admin_commands.h"

#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>

#include "protocol/numbers.h"
#include "protocol/reply.h"
#include "protocol/text.h"
#include "proxy/config.h"
#include "proxy/replica_session.h"

namespace psync::proxy::admin {

using protocol::array_header;
using protocol::bulk_string;
using protocol::error_reply;
using protocol::iequals;
using protocol::integer_reply;
using protocol::simple_string;

namespace {

// ---------------------------------------------------------------- the command table

struct ArgDoc {
  const char* name;
  const char* type;   // "string", "integer", "pattern", "pure-token"
  const char* token;  // "" for none
  bool optional;
  bool multiple;
};

// Redis 7.0's COMMAND INFO / DOCS fields, for what the proxy answers.
// Subcommands are named "parent|sub" and follow their parent.
struct CommandDoc {
  const char* name;
  int arity;
  const char* flags;  // space-separated
  const char* acl;    // space-separated
  const char* group;
  const char* since;
  const char* summary;
  const char* complexity;
  std::vector<ArgDoc> args;
};

const std::vector<CommandDoc>& table() {
  static const std::vector<CommandDoc> t = {
      {"auth", -2, "noscript loading stale fast no-auth allow-busy", "@fast @connection", "connection", "1.0.0",
       "Authenticate to the server", "O(N) where N is the number of passwords defined for the user",
       {{"username", "string", "", true, false}, {"password", "string", "", false, false}}},
      {"bgsave", -1, "admin noscript no-async-loading", "@admin @slow @dangerous", "server", "1.0.0",
       "psync-proxy: start a snapshot refresh of the upstream master, within the lineage", "O(1)", {}},
      {"client", -2, "", "@slow", "connection", "2.4.0", "A container for client connection commands",
       "Depends on subcommand.", {}},
      {"client|getname", 2, "noscript loading stale", "@slow @connection", "connection", "2.6.9",
       "Get the current connection name", "O(1)", {}},
      {"client|help", 2, "loading stale", "@slow @connection", "connection", "5.0.0", "Show helpful text about the different subcommands",
       "O(1)", {}},
      {"client|id", 2, "noscript loading stale", "@slow @connection", "connection", "5.0.0",
       "Returns the client ID for the current connection", "O(1)", {}},
      {"client|info", 2, "noscript loading stale", "@slow @connection", "connection", "6.2.0",
       "Returns information about the current client connection.", "O(1)", {}},
      {"client|list", -2, "admin noscript loading stale", "@admin @slow @dangerous @connection", "connection", "2.4.0",
       "Get the list of client connections", "O(N) where N is the number of client connections",
       {{"normal|master|replica|pubsub", "string", "TYPE", true, false},
        {"client-id", "integer", "ID", true, true}}},
      {"client|setname", 3, "noscript loading stale", "@slow @connection", "connection", "2.6.9",
       "Set the current connection name", "O(1)", {{"connection-name", "string", "", false, false}}},
      {"command", -1, "loading stale", "@slow @connection", "server", "2.8.13", "Get array of Redis command details",
       "O(N) where N is the total number of Redis commands", {}},
      {"command|count", 2, "loading stale", "@slow @connection", "server", "2.8.13", "Get total number of Redis commands",
       "O(1)", {}},
      {"command|docs", -2, "loading stale", "@slow @connection", "server", "7.0.0",
       "Get array of specific Redis command documentation", "O(N) where N is the number of commands to look up",
       {{"command-name", "string", "", true, true}}},
      {"command|help", 2, "loading stale", "@slow @connection", "server", "5.0.0",
       "Show helpful text about the different subcommands", "O(1)", {}},
      {"command|info", -2, "loading stale", "@slow @connection", "server", "2.8.13",
       "Get array of specific Redis command details, or all when no argument is given.",
       "O(N) where N is the number of commands to look up", {{"command-name", "string", "", true, true}}},
      {"command|list", -2, "loading stale", "@slow @connection", "server", "7.0.0", "Get an array of Redis command names",
       "O(N) where N is the total number of Redis commands", {}},
      {"config", -2, "", "@slow", "server", "2.0.0", "A container for server configuration commands",
       "Depends on subcommand.", {}},
      {"config|get", -3, "admin noscript loading stale", "@admin @slow @dangerous", "server", "2.0.0",
       "Get the values of configuration parameters", "O(N) when N is the number of configuration parameters provided",
       {{"parameter", "pattern", "", false, true}}},
      {"config|help", 2, "loading stale", "@slow", "server", "5.0.0", "Show helpful text about the different subcommands",
       "O(1)", {}},
      {"config|resetstat", 2, "admin noscript loading stale", "@admin @slow @dangerous", "server", "2.0.0",
       "psync-proxy: refused (its counters are cumulative, for /metrics)", "O(1)", {}},
      {"config|rewrite", 2, "admin noscript loading stale", "@admin @slow @dangerous", "server", "2.8.0",
       "psync-proxy: refused (its settings are its flags and --config file)", "O(1)", {}},
      {"config|set", -4, "admin noscript loading stale", "@admin @slow @dangerous", "server", "2.0.0",
       "psync-proxy: refused (its settings are its flags and --config file)", "O(N) when N is the number of configuration parameters provided",
       {{"parameter", "string", "", false, false}, {"value", "string", "", false, false}}},
      {"echo", 2, "fast", "@fast @connection", "connection", "1.0.0", "Echo the given string", "O(1)",
       {{"message", "string", "", false, false}}},
      {"hello", -1, "noscript loading stale fast no-auth allow-busy", "@fast @connection", "connection", "6.0.0",
       "Handshake with Redis (psync-proxy: RESP2 only)", "O(1)",
       {{"protover", "integer", "", true, false},
        {"username password", "string", "AUTH", true, false},
        {"clientname", "string", "SETNAME", true, false}}},
      {"info", -1, "loading stale", "@slow @dangerous", "server", "1.0.0", "Get information and statistics about the server",
       "O(1)", {{"section", "string", "", true, true}}},
      {"latency", -2, "", "@slow", "server", "2.8.13", "A container for latency diagnostics commands",
       "Depends on subcommand.", {}},
      {"latency|help", 2, "loading stale", "@slow", "server", "2.8.13", "Show helpful text about the different subcommands",
       "O(1)", {}},
      {"latency|histogram", -2, "admin noscript loading stale", "@admin @slow @dangerous", "server", "7.0.0",
       "Return the cumulative distribution of latencies of a subset of commands or all.", "O(N) where N is the number of commands with latency information being retrieved.",
       {{"command", "string", "", true, true}}},
      {"latency|history", 3, "admin noscript loading stale", "@admin @slow @dangerous", "server", "2.8.13",
       "Return timestamp-latency samples for the event.", "O(1)", {{"event", "string", "", false, false}}},
      {"latency|latest", 2, "admin noscript loading stale", "@admin @slow @dangerous", "server", "2.8.13",
       "Return the latest latency samples for all events.", "O(1)", {}},
      {"latency|reset", -2, "admin noscript loading stale", "@admin @slow @dangerous", "server", "2.8.13",
       "Reset latency data for one or more events.", "O(1)", {{"event", "string", "", true, true}}},
      {"ping", -1, "fast", "@fast @connection", "connection", "1.0.0", "Ping the server", "O(1)",
       {{"message", "string", "", true, false}}},
      {"psync", -3, "admin noscript no-async-loading no-multi", "@admin @slow @dangerous", "server", "2.8.0",
       "Internal command used for replication", "", {{"replicationid", "string", "", false, false},
                                                      {"offset", "integer", "", false, false}}},
      {"quit", -1, "allow-busy noscript loading stale fast no-auth", "@fast @connection", "connection", "1.0.0",
       "Close the connection", "O(1)", {}},
      {"replconf", -1, "admin noscript loading stale allow-busy", "@admin @slow @dangerous", "server", "3.0.0",
       "An internal command for configuring the replication stream", "O(1)", {}},
      {"role", 1, "noscript loading stale fast", "@admin @fast @dangerous", "server", "2.8.12",
       "Return the role of the instance in the context of replication", "O(1)", {}},
      {"slowlog", -2, "", "@slow", "server", "2.2.12", "A container for slow log commands", "Depends on subcommand.", {}},
      {"slowlog|get", -2, "admin loading stale", "@admin @slow @dangerous", "server", "2.2.12",
       "Get the slow log's entries (psync-proxy: always empty)", "O(N) where N is the number of entries returned",
       {{"count", "integer", "", true, false}}},
      {"slowlog|help", 2, "loading stale", "@slow", "server", "6.2.0", "Show helpful text about the different subcommands",
       "O(1)", {}},
      {"slowlog|len", 2, "admin loading stale", "@admin @slow @dangerous", "server", "2.2.12",
       "Get the slow log's length (psync-proxy: always 0)", "O(1)", {}},
      {"slowlog|reset", 2, "admin loading stale", "@admin @slow @dangerous", "server", "2.2.12",
       "Clear all entries from the slow log", "O(N) where N is the number of entries in the slowlog", {}},
      {"sync", 1, "admin noscript no-async-loading no-multi", "@admin @slow @dangerous", "server", "1.0.0",
       "Internal command used for replication", "", {}},
      {"time", 1, "loading stale fast", "@fast", "server", "2.6.0", "Return the current server time", "O(1)", {}},
      {"wait", 3, "noscript", "@slow @connection", "generic", "3.0.0",
       "Wait until that many replicas acknowledged the proxy's stream up to its end when WAIT was called",
       "O(1)", {{"numreplicas", "integer", "", false, false}, {"timeout", "integer", "", false, false}}},
  };
  return t;
}

bool is_sub(const CommandDoc& c) { return std::string_view(c.name).find('|') != std::string_view::npos; }

const CommandDoc* find_command(std::string_view name) {
  for (const auto& c : table()) {
    if (!is_sub(c) && iequals(c.name, name)) return &c;
  }
  return nullptr;
}

const CommandDoc* find_sub(const CommandDoc& parent, std::string_view sub) {
  const std::string prefix = std::string(parent.name) + "|";
  for (const auto& c : table()) {
    std::string_view n(c.name);
    if (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0 && iequals(n.substr(prefix.size()), sub)) {
      return &c;
    }
  }
  return nullptr;
}

std::vector<const CommandDoc*> subs_of(const CommandDoc& parent) {
  std::vector<const CommandDoc*> out;
  const std::string prefix = std::string(parent.name) + "|";
  for (const auto& c : table()) {
    if (std::string_view(c.name).rfind(prefix, 0) == 0) out.push_back(&c);
  }
  return out;
}

std::vector<std::string_view> words(const char* s) {
  std::vector<std::string_view> out;
  std::string_view v(s);
  while (!v.empty()) {
    size_t sp = v.find(' ');
    std::string_view w = v.substr(0, sp);
    if (!w.empty()) out.push_back(w);
    if (sp == std::string_view::npos) break;
    v.remove_prefix(sp + 1);
  }
  return out;
}

std::string status_array(const char* list) {
  auto w = words(list);
  std::string out = array_header(w.size());
  for (auto x : w) out += simple_string(x);
  return out;
}

// COMMAND INFO's 10 fields.
std::string info_of(const CommandDoc& c) {
  std::string out = array_header(10);
  out += bulk_string(c.name);
  out += integer_reply(c.arity);
  out += status_array(c.flags);
  out += integer_reply(0);  // first key: no command of the proxy takes keys
  out += integer_reply(0);
  out += integer_reply(0);
  out += status_array(c.acl);
  out += array_header(0);  // tips
  out += array_header(0);  // key specs
  std::vector<const CommandDoc*> subs = is_sub(c) ? std::vector<const CommandDoc*>{} : subs_of(c);
  out += array_header(subs.size());
  for (const auto* s : subs) out += info_of(*s);
  return out;
}

std::string arg_doc(const ArgDoc& a) {
  std::vector<const char*> flags;
  if (a.optional) flags.push_back("optional");
  if (a.multiple) flags.push_back("multiple");
  const bool token = a.token[0] != '\0';
  std::string out = array_header(2 * (2 + (token ? 1 : 0) + (flags.empty() ? 0 : 1)));
  out += bulk_string("name") + bulk_string(a.name);
  out += bulk_string("type") + bulk_string(a.type);
  if (token) out += bulk_string("token") + bulk_string(a.token);
  if (!flags.empty()) {
    out += bulk_string("flags") + array_header(flags.size());
    for (const char* f : flags) out += simple_string(f);  // redis-cli reads them as status replies
  }
  return out;
}

// COMMAND DOCS's map (a flat array in RESP2): summary, since, group,
// complexity, and arguments / subcommands where there are.
std::string docs_of(const CommandDoc& c) {
  std::vector<const CommandDoc*> subs = is_sub(c) ? std::vector<const CommandDoc*>{} : subs_of(c);
  size_t fields = 4 + (c.args.empty() ? 0 : 1) + (subs.empty() ? 0 : 1);
  std::string out = array_header(2 * fields);
  out += bulk_string("summary") + bulk_string(c.summary);
  out += bulk_string("since") + bulk_string(c.since);
  out += bulk_string("group") + bulk_string(c.group);
  out += bulk_string("complexity") + bulk_string(c.complexity);
  if (!c.args.empty()) {
    out += bulk_string("arguments") + array_header(c.args.size());
    for (const auto& a : c.args) out += arg_doc(a);
  }
  if (!subs.empty()) {
    out += bulk_string("subcommands") + array_header(2 * subs.size());
    for (const auto* s : subs) out += bulk_string(s->name) + docs_of(*s);
  }
  return out;
}

std::string wrong_args(std::string_view name) {
  return error_reply("ERR wrong number of arguments for '" + protocol::peer_text(name, 64) + "' command");
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Looks up `CMD SUB ...` for a container command and checks its arity as
// Redis does: the subcommand's table entry, or "" with the error in `error`.
const CommandDoc* subcommand(const std::vector<std::string>& args, std::string& error) {
  const CommandDoc* parent = find_command(args[0]);
  if (args.size() < 2) {
    error = wrong_args(lower(args[0]));
    return nullptr;
  }
  const CommandDoc* sub = parent ? find_sub(*parent, args[1]) : nullptr;
  if (!sub) {
    error = error_reply("ERR unknown subcommand '" + protocol::peer_text(args[1], 64) + "'. Try " + upper(args[0]) +
                        " HELP.");
    return nullptr;
  }
  const auto n = static_cast<int64_t>(args.size());
  if ((sub->arity > 0 && n != sub->arity) || (sub->arity < 0 && n < -sub->arity)) {
    error = wrong_args(sub->name);
    return nullptr;
  }
  return sub;
}

std::string help_reply(const std::string& cmd, const std::vector<std::string>& lines) {
  std::string out = array_header(lines.size() + 2);
  out += simple_string(cmd + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
  for (const auto& l : lines) out += simple_string(l);
  out += simple_string("HELP");
  return out;
}

}  // namespace

// ---------------------------------------------------------------- pure parts

bool glob_match(std::string_view p, std::string_view s, bool nocase) {
  auto eq = [nocase](char a, char b) {
    if (!nocase) return a == b;
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  };
  // Matches one pattern element at p[pi] (not '*') against c; sets the
  // element's length in len.
  auto element = [&](size_t pi, char c, size_t& len) -> bool {
    if (p[pi] == '?') {
      len = 1;
      return true;
    }
    if (p[pi] == '\\' && pi + 1 < p.size()) {
      len = 2;
      return eq(p[pi + 1], c);
    }
    if (p[pi] != '[') {
      len = 1;
      return eq(p[pi], c);
    }
    // A class, up to the closing ']' (or the pattern's end, as in Redis).
    size_t i = pi + 1;
    bool negate = i < p.size() && p[i] == '^';
    if (negate) ++i;
    bool match = false;
    while (i < p.size() && p[i] != ']') {
      if (p[i] == '\\' && i + 1 < p.size()) {
        match |= eq(p[i + 1], c);
        i += 2;
      } else if (i + 2 < p.size() && p[i + 1] == '-' && p[i + 2] != ']') {
        char lo = p[i], hi = p[i + 2];
        if (lo > hi) std::swap(lo, hi);
        auto in = [&](char x) { return x >= lo && x <= hi; };
        if (nocase) {
          match |= in(static_cast<char>(std::tolower(static_cast<unsigned char>(c)))) ||
                   in(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
        } else {
          match |= in(c);
        }
        i += 3;
      } else {
        match |= eq(p[i], c);
        ++i;
      }
    }
    len = (i < p.size() ? i + 1 : i) - pi;
    return negate ? !match : match;
  };
  // Greedy with one backtrack point, the last '*': every other element
  // matches exactly one byte, so that is enough, and O(|p| * |s|) at worst.
  size_t pi = 0, si = 0;
  size_t star_p = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star_p = ++pi;
      star_s = si;
      continue;
    }
    size_t len = 0;
    if (pi < p.size() && element(pi, s[si], len)) {
      pi += len;
      ++si;
      continue;
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool valid_client_name(std::string_view name) {
  if (name.size() > kMaxClientName) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return c >= '!' && c <= '~'; });
}

std::string format_client_line(const ClientLine& c) {
  std::string out;
  out.reserve(320 + c.name.size());
  auto field = [&out](const char* key, const std::string& value) {
    if (!out.empty()) out += ' ';
    out += key;
    out += '=';
    out += value;
  };
  auto num = [&field](const char* key, uint64_t v) { field(key, std::to_string(v)); };
  num("id", c.id);
  field("addr", c.addr);
  field("laddr", c.laddr);
  field("fd", std::to_string(c.fd));
  field("name", c.name);
  num("age", c.age_s);
  num("idle", c.idle_s);
  field("flags", c.flags);
  field("db", "0");
  field("sub", "0");
  field("psub", "0");
  field("ssub", "0");
  field("multi", "-1");
  num("qbuf", c.qbuf);
  field("qbuf-free", "0");
  field("argv-mem", "0");
  field("multi-mem", "0");
  field("rbs", "16384");  // the session's read chunk
  field("rbp", "0");
  field("obl", "0");
  field("oll", "0");
  num("omem", c.omem);
  num("tot-mem", c.tot_mem);
  field("events", c.events);
  field("cmd", c.cmd);
  field("user", c.user);
  field("redir", "-1");
  field("resp", "2");
  return out;
}

Settings config_settings(const Config& c) {
  auto yes_no = [](bool b) { return std::string(b ? "yes" : "no"); };
  auto secret = [](const std::string& s) { return std::string(s.empty() ? "" : "(hidden)"); };
  auto seconds = [](double s) { return std::to_string(static_cast<int64_t>(s)); };
  std::error_code ec;
  std::string dir = std::filesystem::absolute(c.dir, ec).lexically_normal().string();
  if (ec) dir = c.dir;
  return {
      {"bind", c.bind},
      {"port", std::to_string(c.port)},
      {"maxclients", std::to_string(c.max_clients)},
      {"protected-mode", yes_no(c.protected_mode)},
      {"requirepass", secret(c.requirepass)},
      {"masterauth", secret(c.masterauth)},
      {"masteruser", c.masteruser},
      {"dir", dir},
      {"logfile", c.log_file},
      {"repl-backlog-size", std::to_string(c.backlog_size)},
      {"repl-timeout", seconds(c.replica_timeout_s)},
      {"repl-ping-replica-period", seconds(c.ping_period_s)},
      {"repl-ping-slave-period", seconds(c.ping_period_s)},
      {"repl-diskless-sync", "no"},  // snapshots always go out from the file, as $<len>
  };
}

std::string config_get_reply(const Settings& settings, const std::vector<std::string>& patterns) {
  std::vector<const std::pair<std::string, std::string>*> hits;
  for (const auto& kv : settings) {
    for (const auto& p : patterns) {
      if (glob_match(p, kv.first, true)) {
        hits.push_back(&kv);
        break;
      }
    }
  }
  std::string out = array_header(2 * hits.size());
  for (const auto* kv : hits) out += bulk_string(kv->first) + bulk_string(kv->second);
  return out;
}

const char* command_label(const std::vector<std::string>& args) {
  if (args.empty()) return "NULL";
  const CommandDoc* c = find_command(args[0]);
  if (!c) return "NULL";
  // Subcommands follow their parent in the table.
  const CommandDoc* next = c + 1;
  const bool container = next != table().data() + table().size() &&
                         std::string_view(next->name).rfind(std::string_view(c->name), 0) == 0 &&
                         next->name[std::strlen(c->name)] == '|';
  if (container) {
    const CommandDoc* sub = args.size() > 1 ? find_sub(*c, args[1]) : nullptr;
    return sub ? sub->name : c->name;
  }
  return c->name;
}

size_t command_count() {
  return static_cast<size_t>(std::count_if(table().begin(), table().end(), [](const CommandDoc& c) { return !is_sub(c); }));
}

std::string unknown_command_reply(std::string_view name) {
  return error_reply(
      "ERR unknown command '" + protocol::peer_text(name, 128) +
      "': this is psync-proxy, a replication proxy; it holds no data. It serves replicas (PING, AUTH, REPLCONF, "
      "PSYNC, SYNC, INFO, ROLE, BGSAVE, WAIT) and operators' tools (CLIENT, CONFIG GET, COMMAND, HELLO, ECHO, TIME, "
      "LATENCY, SLOWLOG, QUIT)");
}

std::string parse_wait(const std::vector<std::string>& args, WaitArgs& out) {
  if (args.size() != 3) return wrong_args("wait");
  auto n = protocol::parse_i64(args[1]);
  if (!n) return error_reply("ERR value is not an integer or out of range");
  auto t = protocol::parse_i64(args[2]);
  if (!t) return error_reply("ERR timeout is not an integer or out of range");
  if (*t < 0) return error_reply("ERR timeout is negative");
  out.numreplicas = *n;
  out.timeout_ms = static_cast<uint64_t>(*t);
  return "";
}

int64_t count_at_least(const std::vector<int64_t>& sorted, uint64_t target) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), static_cast<int64_t>(target));
  return static_cast<int64_t>(sorted.end() - it);
}

// ---------------------------------------------------------------- commands

std::string cmd_client(ReplicaSession& self, const SessionHost& host, const std::vector<std::string>& args) {
  std::string error;
  const CommandDoc* sub = subcommand(args, error);
  if (!sub) return error;
  const std::string_view name(sub->name);
  if (name == "client|id") return integer_reply(static_cast<int64_t>(self.id()));
  if (name == "client|getname") return self.name().empty() ? protocol::null_bulk() : bulk_string(self.name());
  if (name == "client|setname") {
    if (!valid_client_name(args[2])) {
      if (args[2].size() > kMaxClientName) {
        return error_reply("ERR Client names longer than " + std::to_string(kMaxClientName) +
                           " bytes are not accepted by psync-proxy");
      }
      return error_reply("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    self.set_name(args[2]);
    return simple_string("OK");
  }
  if (name == "client|info") return bulk_string(format_client_line(self.client_line()) + "\n");
  if (name == "client|help") {
    return help_reply("CLIENT", {"GETNAME", "    Return the name of the current connection.", "ID",
                                 "    Return the ID of the current connection.", "INFO",
                                 "    Return information about the current client connection.",
                                 "LIST [TYPE <normal|master|replica|pubsub>] [ID <id> [<id> ...]]",
                                 "    Return information about client connections.", "SETNAME <name>",
                                 "    Assign the name <name> to the current connection."});
  }
  // CLIENT LIST [TYPE normal|master|replica|slave|pubsub] [ID id ...]
  enum class Type { kAll, kNormal, kReplica, kNone } type = Type::kAll;
  std::vector<uint64_t> ids;
  bool by_id = false;
  for (size_t i = 2; i < args.size();) {
    if (iequals(args[i], "TYPE") && i + 1 < args.size()) {
      const std::string& t = args[i + 1];
      if (iequals(t, "normal")) {
        type = Type::kNormal;
      } else if (iequals(t, "replica") || iequals(t, "slave")) {
        type = Type::kReplica;
      } else if (iequals(t, "master") || iequals(t, "pubsub")) {
        type = Type::kNone;  // the proxy has no master client here and no subscribers
      } else {
        return error_reply("ERR Unknown client type '" + protocol::peer_text(t, 64) + "'");
      }
      i += 2;
    } else if (iequals(args[i], "ID") && i + 1 < args.size()) {
      by_id = true;
      for (++i; i < args.size(); ++i) {
        auto id = protocol::parse_i64(args[i]);
        if (!id || *id <= 0) return error_reply("ERR Invalid client ID");
        ids.push_back(static_cast<uint64_t>(*id));
      }
    } else {
      return error_reply("ERR syntax error");
    }
  }
  std::string text;
  for (const auto& s : host.sessions()) {
    if (s->closing()) continue;
    if (type == Type::kNone) break;
    if (type == Type::kNormal && s->past_handshake()) continue;
    if (type == Type::kReplica && !s->past_handshake()) continue;
    if (by_id && std::find(ids.begin(), ids.end(), s->id()) == ids.end()) continue;
    text += format_client_line(s->client_line());
    text += '\n';
  }
  return bulk_string(text);
}

std::string cmd_config(const SessionHost& host, const std::vector<std::string>& args) {
  std::string error;
  const CommandDoc* sub = subcommand(args, error);
  if (!sub) return error;
  const std::string_view name(sub->name);
  if (name == "config|get") {
    return config_get_reply(config_settings(host.config()), std::vector<std::string>(args.begin() + 2, args.end()));
  }
  if (name == "config|help") {
    return help_reply("CONFIG", {"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
                                 "SET, RESETSTAT, REWRITE",
                                 "    Refused: psync-proxy's settings are its flags and its --config file."});
  }
  if (name == "config|resetstat") {
    return error_reply(
        "ERR CONFIG RESETSTAT is not supported by psync-proxy: its counters are cumulative since the process "
        "started (INFO, /status, /metrics); Prometheus computes rates from them");
  }
  return error_reply("ERR CONFIG " + upper(args[1]) +
                     " is not supported by psync-proxy: its settings are its command-line flags and its --config "
                     "file; change them there and restart it (SIGUSR2 restarts it in place)");
}

std::string cmd_command(const std::vector<std::string>& args) {
  if (args.size() == 1) {
    std::string out = array_header(command_count());
    for (const auto& c : table()) {
      if (!is_sub(c)) out += info_of(c);
    }
    return out;
  }
  std::string error;
  const CommandDoc* sub = subcommand(args, error);
  if (!sub) return error;
  const std::string_view name(sub->name);
  if (name == "command|count") return integer_reply(static_cast<int64_t>(command_count()));
  if (name == "command|list") {
    if (args.size() > 2) {
      return error_reply("ERR COMMAND LIST FILTERBY is not supported by psync-proxy");
    }
    std::string out = array_header(command_count());
    for (const auto& c : table()) {
      if (!is_sub(c)) out += bulk_string(c.name);
    }
    return out;
  }
  if (name == "command|help") {
    return help_reply("COMMAND", {"(no subcommand)", "    Return details about all commands psync-proxy answers.",
                                  "COUNT", "    Return the number of those commands.", "LIST",
                                  "    Return their names.", "INFO [<command-name> ...]",
                                  "    Return details about those commands (all of them with no name).",
                                  "DOCS [<command-name> ...]",
                                  "    Return documentation details about those commands (all of them with no name)."});
  }
  const bool docs = name == "command|docs";
  if (args.size() == 2) {
    // All of them: DOCS is a map (name, docs, ...), INFO an array.
    std::string out = array_header(docs ? 2 * command_count() : command_count());
    for (const auto& c : table()) {
      if (is_sub(c)) continue;
      out += docs ? bulk_string(c.name) + docs_of(c) : info_of(c);
    }
    return out;
  }
  std::string out;
  size_t n = 0;
  for (size_t i = 2; i < args.size(); ++i) {
    const CommandDoc* c = find_command(args[i]);
    if (docs) {
      if (!c) continue;  // Redis leaves unknown names out of the map
      out += bulk_string(c->name) + docs_of(*c);
    } else {
      out += c ? info_of(*c) : protocol::null_bulk();
    }
    ++n;
  }
  return array_header(docs ? 2 * n : n) + out;
}

std::string cmd_hello(ReplicaSession& self, const std::vector<std::string>& args) {
  if (args.size() >= 2) {
    auto ver = protocol::parse_i64(args[1]);
    if (!ver) return error_reply("ERR Protocol version is not an integer or out of range");
    // RESP3 is not spoken here: clients fall back to RESP2 on this error.
    if (*ver != 2) return error_reply("NOPROTO unsupported protocol version");
  }
  std::optional<std::pair<std::string, std::string>> auth;
  std::optional<std::string> setname;
  for (size_t i = 2; i < args.size(); ++i) {
    const size_t more = args.size() - i - 1;
    if (iequals(args[i], "AUTH") && more >= 2) {
      auth = std::make_pair(args[i + 1], args[i + 2]);
      i += 2;
    } else if (iequals(args[i], "SETNAME") && more >= 1) {
      setname = args[i + 1];
      i += 1;
    } else {
      return error_reply("ERR Syntax error in HELLO option '" + protocol::peer_text(args[i], 64) + "'");
    }
  }
  if (auth) {
    std::string err = self.authenticate(std::string_view(auth->first), auth->second);
    if (!err.empty()) return err;
  }
  if (!self.authenticated()) {
    return error_reply(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH "
        "<user> <pass> option can be used to authenticate the client and select the RESP protocol version at the "
        "same time");
  }
  if (setname) {
    if (!valid_client_name(*setname)) {
      return error_reply("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    self.set_name(*setname);
  }
  // Redis's map, as a flat array in RESP2. The protocol it serves is Redis
  // 7.0's (INFO says redis_version:7.0.0 too).
  std::string out = array_header(14);
  out += bulk_string("server") + bulk_string("redis");
  out += bulk_string("version") + bulk_string("7.0.0");
  out += bulk_string("proto") + integer_reply(2);
  out += bulk_string("id") + integer_reply(static_cast<int64_t>(self.id()));
  out += bulk_string("mode") + bulk_string("standalone");
  out += bulk_string("role") + bulk_string("master");
  out += bulk_string("modules") + array_header(0);
  return out;
}

std::string cmd_latency(const std::vector<std::string>& args) {
  std::string error;
  const CommandDoc* sub = subcommand(args, error);
  if (!sub) return error;
  const std::string_view name(sub->name);
  if (name == "latency|reset") return integer_reply(0);
  if (name == "latency|help") {
    return help_reply("LATENCY", {"LATEST", "    Return the latest latency samples (none: psync-proxy keeps none).",
                                  "HISTORY <event>", "    Return the samples of <event> (none).",
                                  "HISTOGRAM [<command> ...]", "    Return latency histograms (none).",
                                  "RESET [<event> ...]", "    Reset the samples (there are none)."});
  }
  return array_header(0);  // LATEST, HISTORY, HISTOGRAM: the proxy samples no latency events
}

std::string cmd_slowlog(const std::vector<std::string>& args) {
  std::string error;
  const CommandDoc* sub = subcommand(args, error);
  if (!sub) return error;
  const std::string_view name(sub->name);
  if (name == "slowlog|len") return integer_reply(0);
  if (name == "slowlog|reset") return simple_string("OK");
  if (name == "slowlog|help") {
    return help_reply("SLOWLOG", {"GET [<count>]", "    Return the slow log's entries (none: psync-proxy keeps none).",
                                  "LEN", "    Return the slow log's length (0).", "RESET",
                                  "    Reset the slow log."});
  }
  if (args.size() > 3) return wrong_args("slowlog|get");
  if (args.size() == 3) {
    auto count = protocol::parse_i64(args[2]);
    if (!count || *count < -1) return error_reply("ERR count should be greater than or equal to -1");
  }
  return array_header(0);
}

std::string cmd_time(const std::vector<std::string>& args) {
  if (args.size() != 1) return wrong_args("time");
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return array_header(2) + bulk_string(std::to_string(tv.tv_sec)) + bulk_string(std::to_string(tv.tv_usec));
}

std::string cmd_echo(const std::vector<std::string>& args) {
  if (args.size() != 2) return wrong_args("echo");
  return bulk_string(args[1]);
}

std::string cmd_wait(ReplicaSession& self, SessionHost& host, const std::vector<std::string>& args) {
  WaitArgs w;
  std::string error = parse_wait(args, w);
  if (!error.empty()) return error;
  // A replica gets no replies, and must not stop reading its own ACKs.
  if (self.past_handshake()) return "";
  // What the proxy has committed now: the replicas' ACKs must reach it. The
  // proxy's own clients write nothing, so this is the meaningful target (a
  // Redis master waits for the client's own last write).
  const uint64_t target = host.store().committed_end();
  const int64_t acked = host.replicas_acked(target);
  if (acked >= w.numreplicas) return integer_reply(acked);
  self.block_in_wait(w.numreplicas, target, w.timeout_ms);
  return "";
}

}  // namespace psync::proxy::admin

// ---------------------------------------------------------------- WAIT, for every session

namespace psync::proxy {

int64_t SessionHost::replicas_acked(uint64_t target) const {
  int64_t n = 0;
  for (const auto& s : sessions()) {
    if (s->acks() && s->acked_offset() >= static_cast<int64_t>(target)) ++n;
  }
  return n;
}

void SessionHost::replica_acked() {
  if (waiting_.empty()) return;
  std::vector<int64_t> acked;
  for (const auto& s : sessions()) {
    if (s->acks()) acked.push_back(s->acked_offset());
  }
  std::sort(acked.begin(), acked.end());
  // Answering a client runs what it pipelined after WAIT, which may block
  // it again: the list is read before anyone is answered.
  std::vector<std::pair<ReplicaSession*, int64_t>> ready;
  for (auto* w : waiting_) {
    const int64_t n = admin::count_at_least(acked, w->wait_target());
    if (n >= w->wait_needed()) ready.emplace_back(w, n);
  }
  for (auto& [w, n] : ready) w->finish_wait(n);
}

void SessionHost::wait_started(ReplicaSession* session) { waiting_.push_back(session); }

void SessionHost::wait_ended(ReplicaSession* session) {
  auto it = std::find(waiting_.begin(), waiting_.end(), session);
  if (it != waiting_.end()) waiting_.erase(it);
}

}  // namespace psync::proxy
