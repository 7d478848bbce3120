// The pure parts of the commands operators' tools send (proxy/admin_commands.h).
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "proxy/admin_commands.h"
#include "proxy/config.h"
#include "proxy/status_view.h"

using namespace psync::proxy;
using namespace psync::proxy::admin;

TEST_CASE("glob: Redis's patterns for CONFIG GET") {
  CHECK(glob_match("*", "repl-timeout"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("repl-*", "repl-backlog-size"));
  CHECK_FALSE(glob_match("repl-*", "port"));
  CHECK(glob_match("*-size", "repl-backlog-size"));
  CHECK(glob_match("*backlog*", "repl-backlog-size"));
  CHECK(glob_match("p?rt", "port"));
  CHECK_FALSE(glob_match("p?rt", "prt"));
  CHECK(glob_match("[bp]ort", "port"));
  CHECK(glob_match("[a-q]ort", "port"));
  CHECK_FALSE(glob_match("[^p]ort", "port"));
  CHECK(glob_match("[^b]ort", "port"));
  CHECK(glob_match("repl\\-timeout", "repl-timeout"));
  CHECK(glob_match("a\\*b", "a*b"));
  CHECK_FALSE(glob_match("a\\*b", "axb"));
  // CONFIG GET matches names without regard to case; the exact forms too.
  CHECK(glob_match("PORT", "port"));
  CHECK(glob_match("Repl-*", "repl-timeout"));
  CHECK_FALSE(glob_match("PORT", "port", false));
  CHECK(glob_match("[A-Z]ort", "port"));
  // Several stars backtrack to the last one only.
  CHECK(glob_match("*a*b*c", "xxaxxbxxc"));
  CHECK_FALSE(glob_match("*a*b*c", "xxaxxcxxb"));
  CHECK(glob_match("**", "anything"));
  CHECK_FALSE(glob_match("", "x"));
  CHECK(glob_match("", ""));
  // An unterminated class runs to the end of the pattern, as in Redis.
  CHECK(glob_match("por[t", "port"));
}

TEST_CASE("glob: a hostile pattern takes no exponential time") {
  std::string pattern;
  for (int i = 0; i < 2000; ++i) pattern += "*a";
  pattern += "b";
  const std::string text(4000, 'a');
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(glob_match(pattern, text));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("CLIENT SETNAME: Redis's rule for names, and a length cap") {
  CHECK(valid_client_name("redis_exporter"));
  CHECK(valid_client_name(""));  // clears the name
  CHECK(valid_client_name("a!~b"));
  CHECK_FALSE(valid_client_name("a b"));
  CHECK_FALSE(valid_client_name("a\nb"));
  CHECK_FALSE(valid_client_name(std::string("a\0b", 3)));
  CHECK_FALSE(valid_client_name("caf\xc3\xa9"));
  CHECK(valid_client_name(std::string(kMaxClientName, 'x')));
  CHECK_FALSE(valid_client_name(std::string(kMaxClientName + 1, 'x')));
}

TEST_CASE("CLIENT LIST: one line in Redis 7.0's field order") {
  ClientLine c;
  c.id = 7;
  c.addr = "127.0.0.1:50000";
  c.laddr = "127.0.0.1:6380";
  c.fd = 12;
  c.name = "redis_exporter";
  c.age_s = 30;
  c.idle_s = 2;
  c.flags = "N";
  c.qbuf = 0;
  c.omem = 5;
  c.tot_mem = 900;
  c.events = "r";
  c.cmd = "client|list";
  CHECK(format_client_line(c) ==
        "id=7 addr=127.0.0.1:50000 laddr=127.0.0.1:6380 fd=12 name=redis_exporter age=30 idle=2 flags=N db=0 "
        "sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 "
        "omem=5 tot-mem=900 events=r cmd=client|list user=default redir=-1 resp=2");
  // Every field is key=value with no space inside: tools split on spaces, then on '='.
  c.name = "";
  c.flags = "S";
  for (size_t pos = 0, next = 0; next != std::string::npos; pos = next + 1) {
    const std::string line = format_client_line(c);
    next = line.find(' ', pos);
    std::string field = line.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    CHECK_MESSAGE(field.find('=') != std::string::npos, field);
  }
}

TEST_CASE("the cmd= label: known commands, subcommands, NULL for the rest") {
  CHECK(std::string(command_label({"PING"})) == "ping");
  CHECK(std::string(command_label({"client", "LIST"})) == "client|list");
  CHECK(std::string(command_label({"CLIENT", "nosuch"})) == "client");
  CHECK(std::string(command_label({"CLIENT"})) == "client");
  CHECK(std::string(command_label({"replconf", "ack", "5"})) == "replconf");
  CHECK(std::string(command_label({"GET", "k"})) == "NULL");
  CHECK(std::string(command_label({})) == "NULL");
}

namespace {

Config sample_config() {
  Config c;
  c.bind = "0.0.0.0";
  c.port = 6380;
  c.max_clients = 500;
  c.backlog_size = 64ull << 20;
  c.replica_timeout_s = 45;
  c.dir = "/var/lib/psync-proxy";
  c.requirepass = "s3cret-for-replicas";
  c.masterauth = "s3cret-of-the-master";
  return c;
}

std::string pairs(const Settings& s, const std::vector<std::string>& patterns) {
  return config_get_reply(s, patterns);
}

}  // namespace

TEST_CASE("CONFIG GET: the proxy's settings under Redis's names, passwords never shown") {
  const Settings s = config_settings(sample_config());
  auto value = [&](const std::string& name) {
    for (const auto& [k, v] : s) {
      if (k == name) return v;
    }
    return std::string("(absent)");
  };
  CHECK(value("port") == "6380");
  CHECK(value("bind") == "0.0.0.0");
  CHECK(value("maxclients") == "500");
  CHECK(value("repl-backlog-size") == std::to_string(64ull << 20));
  CHECK(value("repl-timeout") == "45");
  CHECK(value("dir") == "/var/lib/psync-proxy");
  CHECK(value("requirepass") == "(hidden)");
  CHECK(value("masterauth") == "(hidden)");
  for (const auto& [k, v] : s) {
    CHECK(v.find("s3cret") == std::string::npos);
  }
  Config none;
  const Settings n = config_settings(none);
  for (const auto& [k, v] : n) {
    if (k == "requirepass" || k == "masterauth") CHECK(v.empty());
  }
  // The reply: a flat name/value array.
  CHECK(pairs(s, {"port"}) == "*2\r\n$4\r\nport\r\n$4\r\n6380\r\n");
  CHECK(pairs(s, {"nosuch"}) == "*0\r\n");
  CHECK(pairs(s, {"PORT"}) == "*2\r\n$4\r\nport\r\n$4\r\n6380\r\n");
  // repl-* as Redis: every repl- name, each once however many patterns match it.
  const std::string repl = pairs(s, {"repl-*", "repl-timeout", "*timeout"});
  CHECK(repl.rfind("*10\r\n", 0) == 0);  // backlog-size, timeout, two ping periods, diskless-sync
  CHECK(repl.find("repl-timeout") == repl.rfind("repl-timeout"));
  CHECK(pairs(s, {"*"}).rfind("*" + std::to_string(2 * s.size()) + "\r\n", 0) == 0);
}

TEST_CASE("COMMAND: COUNT, INFO and DOCS for what the proxy answers, nil or nothing for the rest") {
  CHECK(cmd_command({"COMMAND", "COUNT"}) == ":" + std::to_string(command_count()) + "\r\n");
  CHECK(command_count() >= 18);
  CHECK(cmd_command({"COMMAND", "INFO", "nosuch"}) == "*1\r\n$-1\r\n");
  CHECK(cmd_command({"COMMAND", "DOCS", "nosuch"}) == "*0\r\n");
  const std::string ping = cmd_command({"COMMAND", "INFO", "ping"});
  CHECK(ping.rfind("*1\r\n*10\r\n$4\r\nping\r\n:-1\r\n*1\r\n+fast\r\n", 0) == 0);
  // DOCS: a map (flat array) of name and docs; argument flags are status replies, as
  // redis-cli asserts.
  const std::string docs = cmd_command({"COMMAND", "DOCS", "wait"});
  CHECK(docs.rfind("*2\r\n$4\r\nwait\r\n*10\r\n$7\r\nsummary\r\n", 0) == 0);
  const std::string client = cmd_command({"COMMAND", "DOCS", "client"});
  CHECK(client.find("$11\r\nsubcommands\r\n") != std::string::npos);
  CHECK(client.find("$11\r\nclient|list\r\n") != std::string::npos);
  CHECK(client.find("+optional\r\n") != std::string::npos);
  CHECK(cmd_command({"COMMAND", "NOSUCH"}) == "-ERR unknown subcommand 'NOSUCH'. Try COMMAND HELP.\r\n");
  CHECK(cmd_command({"COMMAND", "COUNT", "x"}) == "-ERR wrong number of arguments for 'command|count' command\r\n");
}

TEST_CASE("LATENCY, SLOWLOG, TIME, ECHO: what a proxy with no latency samples and no slow log answers") {
  CHECK(cmd_latency({"LATENCY", "LATEST"}) == "*0\r\n");
  CHECK(cmd_latency({"latency", "history", "command"}) == "*0\r\n");
  CHECK(cmd_latency({"LATENCY", "RESET"}) == ":0\r\n");
  CHECK(cmd_latency({"LATENCY"}) == "-ERR wrong number of arguments for 'latency' command\r\n");
  CHECK(cmd_latency({"LATENCY", "DOCTOR"}) == "-ERR unknown subcommand 'DOCTOR'. Try LATENCY HELP.\r\n");
  CHECK(cmd_slowlog({"SLOWLOG", "GET"}) == "*0\r\n");
  CHECK(cmd_slowlog({"SLOWLOG", "GET", "1"}) == "*0\r\n");
  CHECK(cmd_slowlog({"SLOWLOG", "GET", "x"}) == "-ERR count should be greater than or equal to -1\r\n");
  CHECK(cmd_slowlog({"SLOWLOG", "LEN"}) == ":0\r\n");
  CHECK(cmd_slowlog({"SLOWLOG", "RESET"}) == "+OK\r\n");
  CHECK(cmd_time({"TIME"}).rfind("*2\r\n$10\r\n", 0) == 0);
  CHECK(cmd_time({"TIME", "x"}) == "-ERR wrong number of arguments for 'time' command\r\n");
  CHECK(cmd_echo({"ECHO", "hi"}) == "$2\r\nhi\r\n");
  CHECK(cmd_echo({"ECHO"}) == "-ERR wrong number of arguments for 'echo' command\r\n");
}

TEST_CASE("WAIT arguments and the count of acknowledging replicas") {
  WaitArgs w;
  CHECK(parse_wait({"WAIT", "2", "1000"}, w).empty());
  CHECK(w.numreplicas == 2);
  CHECK(w.timeout_ms == 1000);
  CHECK(parse_wait({"WAIT", "1", "0"}, w).empty());
  CHECK(w.timeout_ms == 0);
  CHECK(parse_wait({"WAIT", "x", "0"}, w) == "-ERR value is not an integer or out of range\r\n");
  CHECK(parse_wait({"WAIT", "1", "x"}, w) == "-ERR timeout is not an integer or out of range\r\n");
  CHECK(parse_wait({"WAIT", "1", "-5"}, w) == "-ERR timeout is negative\r\n");
  CHECK(parse_wait({"WAIT", "1"}, w) == "-ERR wrong number of arguments for 'wait' command\r\n");
  const std::vector<int64_t> acked = {10, 20, 20, 30};
  CHECK(count_at_least(acked, 0) == 4);
  CHECK(count_at_least(acked, 20) == 3);
  CHECK(count_at_least(acked, 21) == 1);
  CHECK(count_at_least(acked, 31) == 0);
  CHECK(count_at_least({}, 1) == 0);
}

TEST_CASE("the unknown-command error names what the proxy answers") {
  const std::string e = unknown_command_reply("GET");
  CHECK(e.rfind("-ERR unknown command 'GET': this is psync-proxy", 0) == 0);
  for (const char* c : {"PSYNC", "WAIT", "CLIENT", "CONFIG GET", "COMMAND", "HELLO", "LATENCY", "SLOWLOG"}) {
    CHECK_MESSAGE(e.find(c) != std::string::npos, c);
  }
  // The peer's bytes are made printable: one error line, whatever the name holds.
  const std::string hostile = unknown_command_reply("a\r\n+OK\r\nb");
  CHECK(hostile.find("\r\n") == hostile.size() - 2);
}

TEST_CASE("INFO clients: connections that are not replicas, the cap, and clients blocked in WAIT") {
  StatusView v;
  v.proxy.max_clients = 1000;
  v.proxy.blocked_clients = 1;
  StatusView::ReplicaPart tool, replica;
  tool.past_handshake = false;
  replica.past_handshake = true;
  v.replicas = {tool, replica, tool};
  const std::string info = render_info(v, "clients");
  CHECK(info == "# Clients\r\nconnected_clients:2\r\nmaxclients:1000\r\nblocked_clients:1\r\n");
  CHECK(render_info(v, "").find("# Clients\r\n") != std::string::npos);
}
