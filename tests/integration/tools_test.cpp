// Operators' tools against the proxy as against a Redis 7 master: redis-cli (its interactive
// help comes from COMMAND DOCS), client commands (CLIENT, HELLO, CONFIG GET, COMMAND, LATENCY,
// SLOWLOG, TIME, ECHO), WAIT, and Debian's prometheus-redis-exporter scraping it.
#include <doctest/doctest.h>

#include <csignal>
#include <fstream>
#include <sstream>

#include "tests/support/cluster.h"
#include "tests/support/compat.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/ports.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

ProxyOptions proxy_args(std::vector<std::string> args) {
    ProxyOptions o;
    o.extra_args = std::move(args);
    return o;
}

// One command on a connection of its own (the proxy closes clients that are not replicas
// after --handshake-timeout, so tests that lower it never keep one).
Reply proxy_command(const ProxyProcess& proxy, const Command& cmd) {
    RedisClient c = RedisClient::connect(proxy.port());
    return c.command(cmd);
}

// CLIENT LIST parsed: one map of fields per line.
std::vector<std::map<std::string, std::string>> client_list(const std::string& text) {
    std::vector<std::map<std::string, std::string>> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        std::map<std::string, std::string> fields;
        std::istringstream words(line);
        for (std::string w; words >> w;) {
            const size_t eq = w.find('=');
            if (eq != std::string::npos) fields[w.substr(0, eq)] = w.substr(eq + 1);
        }
        out.push_back(std::move(fields));
    }
    return out;
}

// The entry of a CLIENT LIST whose addr ends in :port, or an empty map.
std::map<std::string, std::string> client_entry(const std::string& text, int port) {
    for (auto& e : client_list(text)) {
        const std::string& a = e["addr"];
        if (a.size() > std::to_string(port).size() && a.substr(a.rfind(':') + 1) == std::to_string(port)) return e;
    }
    return {};
}

// Every map key of a RESP2 map reply (a flat array) is a bulk string; argument flags are
// status replies: the types redis-cli asserts on when it reads COMMAND DOCS.
void check_docs_types(const Reply& map, const std::string& where) {
    REQUIRE_MESSAGE(map.type == Reply::Type::Array, where);
    REQUIRE_MESSAGE(map.elements.size() % 2 == 0, where);
    for (size_t i = 0; i < map.elements.size(); i += 2) {
        const Reply& key = map.elements[i];
        const Reply& value = map.elements[i + 1];
        CHECK_MESSAGE(key.type == Reply::Type::String, where << " key " << i);
        if (key.str == "summary" || key.str == "since" || key.str == "group" || key.str == "complexity") {
            CHECK_MESSAGE(value.type == Reply::Type::String, where << " " << key.str);
        } else if (key.str == "arguments") {
            REQUIRE(value.type == Reply::Type::Array);
            for (const Reply& arg : value.elements) {
                REQUIRE(arg.type == Reply::Type::Array);
                bool has_type = false;
                for (size_t j = 0; j + 1 < arg.elements.size(); j += 2) {
                    has_type |= arg.elements[j].str == "type";
                    if (arg.elements[j].str == "flags") {
                        for (const Reply& f : arg.elements[j + 1].elements) CHECK(f.type == Reply::Type::Status);
                    }
                }
                CHECK_MESSAGE(has_type, where << ": an argument with no type crashes redis-cli");
            }
        } else if (key.str == "subcommands") {
            for (size_t j = 0; j < value.elements.size(); j += 2) {
                CHECK(value.elements[j].str.find('|') != std::string::npos);  // "client|list"
                check_docs_types(value.elements[j + 1], where + " " + value.elements[j].str);
            }
        }
    }
}

std::string run_redis_cli(Sandbox& sandbox, int port, const std::string& input, const std::string& name) {
    const std::string dir = sandbox.subdir("redis-cli");
    const std::string in = dir + "/" + name + ".in";
    const std::string out = dir + "/" + name + ".out";
    std::ofstream(in) << input;
    // No command on the command line: redis-cli's REPL, reading its lines from the file. It
    // asks COMMAND DOCS first, as in a terminal, and asserts on the reply's types.
    const int code = run_command({find_executable("sh"), "-c",
                                  "exec \"$0\" -h 127.0.0.1 -p \"$1\" < \"$2\"", find_executable("redis-cli"),
                                  std::to_string(port), in},
                                 out, 20);
    CHECK_MESSAGE(code == 0, "redis-cli exited " << code << ":\n" << read_file(out));
    return read_file(out);
}

}  // namespace

TEST_CASE("tools: CLIENT and HELLO and CONFIG GET and COMMAND and LATENCY and SLOWLOG and TIME and ECHO answer as a Redis 7 master, and redis-cli's help comes from the proxy") {
    ProxiedCluster c;
    c.start(1, 50);
    RedisServer& replica = *c.replicas[0];
    RedisClient pc = RedisClient::connect(c.proxy->port());

    // CLIENT SETNAME / GETNAME / ID / INFO / LIST.
    CHECK(pc.must({"CLIENT", "GETNAME"}).is_nil());
    CHECK(pc.must({"CLIENT", "SETNAME", "ops-console"}).str == "OK");
    CHECK(pc.must({"CLIENT", "GETNAME"}).str == "ops-console");
    const long long id = pc.must({"CLIENT", "ID"}).integer;
    CHECK(id > 0);
    CHECK(pc.command({"CLIENT", "SETNAME", "has space"}).str ==
          "ERR Client names cannot contain spaces, newlines or special characters.");
    CHECK(pc.command({"CLIENT", "SETNAME"}).str == "ERR wrong number of arguments for 'client|setname' command");
    CHECK(pc.command({"CLIENT", "KILL", "x"}).str == "ERR unknown subcommand 'KILL'. Try CLIENT HELP.");
    const std::string info = pc.must({"CLIENT", "INFO"}).str;
    CHECK(info.back() == '\n');
    auto me = client_list(info).at(0);
    CHECK(me["id"] == std::to_string(id));
    CHECK(me["name"] == "ops-console");
    CHECK(me["flags"] == "N");
    CHECK(me["cmd"] == "client|info");
    CHECK(me["laddr"] == "127.0.0.1:" + std::to_string(c.proxy->port()));
    CHECK(me["db"] == "0");

    wait_until("the replica's last command to be REPLCONF (its ACK)", 10, [&](std::string& state) {
        const std::string list = pc.must({"CLIENT", "LIST"}).str;
        state = list;
        auto e = client_list(list);
        return e.size() == 2 && e[0]["cmd"] == "replconf";
    });
    const std::string list = pc.must({"CLIENT", "LIST"}).str;
    auto entries = client_list(list);
    REQUIRE(entries.size() == 2);
    // The replica (flags S, last command REPLCONF ACK) and this client, in accept order.
    CHECK(entries[0]["flags"] == "S");
    CHECK(entries[0]["cmd"] == "replconf");
    CHECK(entries[1]["id"] == std::to_string(id));
    CHECK(entries[1]["cmd"] == "client|list");
    for (auto& e : entries) {
        for (const char* key : {"id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "omem", "cmd", "resp"}) {
            CHECK_MESSAGE(e.count(key) == 1, key << " missing in " << list);
        }
    }
    CHECK(client_list(pc.must({"CLIENT", "LIST", "TYPE", "replica"}).str).size() == 1);
    CHECK(client_list(pc.must({"CLIENT", "LIST", "TYPE", "normal"}).str).at(0)["id"] == std::to_string(id));
    CHECK(pc.must({"CLIENT", "LIST", "TYPE", "master"}).str.empty());
    CHECK(client_list(pc.must({"CLIENT", "LIST", "ID", std::to_string(id)}).str).size() == 1);
    CHECK(pc.command({"CLIENT", "LIST", "TYPE", "bogus"}).str == "ERR Unknown client type 'bogus'");

    // HELLO: RESP2's flat map, the fields Redis gives; RESP3 refused as unsupported.
    Reply hello = pc.must({"HELLO", "2", "SETNAME", "hello-client"});
    REQUIRE(hello.elements.size() == 14);
    std::map<std::string, Reply> h;
    for (size_t i = 0; i < 14; i += 2) h[hello.elements[i].str] = hello.elements[i + 1];
    CHECK(h["server"].str == "redis");
    CHECK(h["proto"].integer == 2);
    CHECK(h["id"].integer == id);
    CHECK(h["mode"].str == "standalone");
    CHECK(h["role"].str == "master");
    CHECK(h["modules"].type == Reply::Type::Array);
    CHECK(pc.must({"CLIENT", "GETNAME"}).str == "hello-client");
    CHECK(pc.must({"HELLO"}).elements.size() == 14);
    CHECK(pc.command({"HELLO", "3"}).str == "NOPROTO unsupported protocol version");
    CHECK(pc.command({"HELLO", "x"}).str == "ERR Protocol version is not an integer or out of range");
    CHECK(pc.command({"HELLO", "2", "bogus"}).str == "ERR Syntax error in HELLO option 'bogus'");

    // CONFIG GET: Redis's names for the proxy's settings, glob patterns, empty for the rest.
    auto config = [&](const Command& cmd) {
        std::map<std::string, std::string> m;
        Reply r = pc.must(cmd);
        REQUIRE(r.elements.size() % 2 == 0);
        for (size_t i = 0; i < r.elements.size(); i += 2) m[r.elements[i].str] = r.elements[i + 1].str;
        return m;
    };
    auto all = config({"CONFIG", "GET", "*"});
    CHECK(all["port"] == std::to_string(c.proxy->port()));
    CHECK(all["bind"] == "127.0.0.1");
    CHECK(all["maxclients"] == "1000");
    CHECK(all["repl-backlog-size"] == std::to_string(256ull << 20));
    CHECK(all["repl-timeout"] == "60");
    CHECK(all["requirepass"].empty());
    CHECK(all["dir"] == c.proxy->data_dir());
    auto repl = config({"CONFIG", "GET", "repl-*"});
    CHECK(repl.size() >= 3);
    for (const auto& [k, v] : repl) CHECK(k.rfind("repl-", 0) == 0);
    CHECK(config({"CONFIG", "GET", "maxmemory"}).empty());
    CHECK(config({"CONFIG", "GET", "port", "bind"}).size() == 2);
    CHECK(pc.command({"CONFIG", "SET", "port", "1"}).str.rfind("ERR CONFIG SET is not supported by psync-proxy", 0) == 0);
    CHECK(pc.command({"CONFIG", "RESETSTAT"}).str.rfind("ERR CONFIG RESETSTAT is not supported", 0) == 0);
    CHECK(pc.command({"CONFIG"}).str == "ERR wrong number of arguments for 'config' command");

    // COMMAND: what redis-cli and client libraries read.
    const long long count = pc.must({"COMMAND", "COUNT"}).integer;
    CHECK(count == static_cast<long long>(pc.must({"COMMAND", "LIST"}).elements.size()));
    CHECK(count == static_cast<long long>(pc.must({"COMMAND"}).elements.size()));
    Reply docs = pc.must({"COMMAND", "DOCS"});
    CHECK(docs.elements.size() == 2 * static_cast<size_t>(count));
    for (size_t i = 0; i < docs.elements.size(); i += 2) check_docs_types(docs.elements[i + 1], docs.elements[i].str);
    Reply pinginfo = pc.must({"COMMAND", "INFO", "ping", "get"});
    REQUIRE(pinginfo.elements.size() == 2);
    CHECK(pinginfo.elements[0].elements.at(0).str == "ping");
    CHECK(pinginfo.elements[1].is_nil());

    // The rest a monitoring agent sends.
    CHECK(pc.must({"LATENCY", "LATEST"}).elements.empty());
    CHECK(pc.must({"SLOWLOG", "GET", "10"}).elements.empty());
    CHECK(pc.must({"SLOWLOG", "LEN"}).integer == 0);
    CHECK(pc.must({"SLOWLOG", "RESET"}).str == "OK");
    Reply time = pc.must({"TIME"});
    REQUIRE(time.elements.size() == 2);
    CHECK(std::abs(std::stoll(time.elements[0].str) - unix_time_ms() / 1000) <= 2);
    CHECK(pc.must({"ECHO", "hello"}).str == "hello");
    // Data commands keep a clear error naming what the proxy does answer.
    const std::string unknown = pc.command({"DBSIZE"}).str;
    CHECK(unknown.rfind("ERR unknown command 'DBSIZE': this is psync-proxy", 0) == 0);
    CHECK(unknown.find("CLIENT") != std::string::npos);
    CHECK(unknown.find("WAIT") != std::string::npos);

    // redis-cli's REPL: the help it prints is the proxy's (the summary of WAIT is its own, not
    // the one built into redis-cli), and commands go through.
    const std::string out =
        run_redis_cli(c.sandbox, c.proxy->port(), "help wait\nhelp client list\nclient setname cli\nclient getname\n", "repl");
    CHECK_MESSAGE(out.find("acknowledged the proxy's stream") != std::string::npos, out);
    CHECK_MESSAGE(out.find("[TYPE normal|master|replica|pubsub]") != std::string::npos, out);
    CHECK_MESSAGE(out.find("\ncli\n") != std::string::npos, out);

    // Through it all the replica was served.
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    wait_keyspace_equal(c.master, replica, 30);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("tools: with --requirepass HELLO AUTH authenticates and HELLO alone gets NOAUTH and CONFIG GET hides the password") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    const std::string password = "replicas-secret-7f3a";
    ProxyOptions options;
    options.requirepass = password;
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    proxy.start();
    RedisClient pc = RedisClient::connect(proxy.port());
    CHECK(pc.command({"HELLO"}).str.rfind("NOAUTH HELLO must be called with the client already authenticated", 0) == 0);
    CHECK(pc.command({"CLIENT", "LIST"}).str == "NOAUTH Authentication required.");
    CHECK(pc.command({"HELLO", "2", "AUTH", "default", "wrong"}).str.rfind("WRONGPASS", 0) == 0);
    Reply hello = pc.command({"HELLO", "2", "AUTH", "default", password, "SETNAME", "agent"});
    REQUIRE_MESSAGE(hello.elements.size() == 14, hello.describe());
    CHECK(pc.must({"CLIENT", "GETNAME"}).str == "agent");
    Reply r = pc.must({"CONFIG", "GET", "requirepass"});
    REQUIRE(r.elements.size() == 2);
    CHECK(r.elements[1].str == "(hidden)");
    const std::string everything = pc.must({"CONFIG", "GET", "*"}).describe() + pc.must({"CLIENT", "LIST"}).describe() +
                                   pc.must({"INFO"}).str;
    CHECK(everything.find(password) == std::string::npos);
    check_clean_shutdown(proxy);
}

TEST_CASE("wait: WAIT counts replicas whose ACK reaches the proxy's end and blocks the client alone until then or its timeout") {
    ProxiedCluster c;
    // Clients that are not replicas are closed after 3 s, but not while blocked in WAIT.
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), proxy_args({"--handshake-timeout", "3"}));
    c.start(2, 50);
    RedisServer& r1 = *c.replicas[0];
    RedisServer& r2 = *c.replicas[1];
    wait_until("both replicas to have ACKed the proxy's end", 10,
               [&] { return proxy_command(*c.proxy, {"WAIT", "0", "0"}).integer == 2; });

    CHECK(proxy_command(*c.proxy, {"WAIT"}).str == "ERR wrong number of arguments for 'wait' command");
    CHECK(proxy_command(*c.proxy, {"WAIT", "1", "-1"}).str == "ERR timeout is negative");
    CHECK(proxy_command(*c.proxy, {"WAIT", "x", "0"}).str == "ERR value is not an integer or out of range");

    // Writes, then WAIT: both replicas ACK once a second, so it returns 2 within about that.
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    auto start = Clock::now();
    CHECK(proxy_command(*c.proxy, {"WAIT", "2", "5000"}).integer == 2);
    CHECK(seconds_since(start) < 3);
    // More replicas than there are: the timeout ends it, with the count.
    start = Clock::now();
    CHECK(proxy_command(*c.proxy, {"WAIT", "3", "400"}).integer == 2);
    CHECK(seconds_since(start) >= 0.39);
    CHECK(seconds_since(start) < 3);
    // A timeout longer than --handshake-timeout: the blocked client is not closed.
    {
        ScriptedReplica w(c.proxy->port());
        start = Clock::now();
        w.send("WAIT 3 4000\r\n");
        CHECK(w.read_line(10) == ":2");
        CHECK(seconds_since(start) >= 3.9);
    }

    // A frozen replica: WAIT 2 0 blocks that client, and only it.
    const int64_t before = json_int(c.proxy->status(), "/proxy/offset");
    r2.process().signal(SIGSTOP);
    write_burst(m, ProxiedCluster::kDbs, 2);
    const int64_t end = json_int(c.proxy->wait_status("the burst in the proxy's log", 10, [&](const json& s, std::string&) {
        return json_int(s, "/proxy/offset") > before;
    }), "/proxy/offset");
    ScriptedReplica w(c.proxy->port());
    w.send("WAIT 2 0\r\nPING\r\n");  // the PING waits behind the WAIT, as in Redis
    CHECK(w.read_for(1.5).empty());
    {
        RedisClient other = RedisClient::connect(c.proxy->port());
        CHECK(other.must({"PING"}).str == "PONG");  // the proxy answers everyone else
        CHECK(info_value(other.must({"INFO", "clients"}).str, "blocked_clients") == "1");
        auto entry = client_entry(other.must({"CLIENT", "LIST"}).str, w.local_port());
        CHECK(entry["flags"] == "b");
        CHECK(entry["cmd"] == "wait");
    }
    write_burst(m, ProxiedCluster::kDbs, 3);  // r1 keeps getting the stream meanwhile
    wait_keyspace_equal(c.master, r1, 30);
    CHECK(json_int(c.proxy->status(), "/proxy/offset") > end);
    CHECK(w.read_for(0.2).empty());
    r2.process().signal(SIGCONT);
    CHECK(w.read_line(10) == ":2");
    CHECK(w.read_line(5) == "+PONG");
    c.wait_replicas_equal();

    // A client closed while blocked goes away with its WAIT.
    {
        ScriptedReplica gone(c.proxy->port());
        gone.send("WAIT 5 0\r\n");
        wait_until("the client blocked", 5, [&] {
            return info_value(proxy_command(*c.proxy, {"INFO", "clients"}).str, "blocked_clients") == "1";
        });
    }
    wait_until("the closed client no longer blocked", 5, [&] {
        return info_value(proxy_command(*c.proxy, {"INFO", "clients"}).str, "blocked_clients") == "0";
    });
    CHECK(count_log_lines(c.proxy->log_path(), "closed by peer while blocked in WAIT") == 1);
    CHECK(r1.log_count("Connection with master lost") == 0);
    check_clean_shutdown(*c.proxy);
}

namespace {

// The value of a sample in Prometheus text: `name` alone, or name{...} whose labels contain
// `labels` ("" for any). NaN when absent.
double sample(const std::string& text, const std::string& name, const std::string& labels = "") {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        if (line.rfind(name, 0) != 0) continue;
        const char next = line.size() > name.size() ? line[name.size()] : '\0';
        if (next != ' ' && next != '{') continue;
        if (!labels.empty() && line.find(labels) == std::string::npos) continue;
        return std::stod(line.substr(line.rfind(' ') + 1));
    }
    return std::nan("");
}

}  // namespace

TEST_CASE("tools: prometheus-redis-exporter scrapes the proxy with no error and its metrics agree with /status") {
    ProxiedCluster c;
    c.start(2, 50);
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.wait_replicas_equal();

    // Debian's prometheus-redis-exporter (deploy/lib.sh TEST_PACKAGES), with every option that
    // sends more commands: CLIENT LIST, CONFIG GET *, PING on connect.
    const std::string exe = find_executable("prometheus-redis-exporter");
    const std::string log = c.sandbox.subdir("exporter") + "/exporter.log";
    c.sandbox.watch_log("exporter", log);
    Process exporter;
    int port = 0;
    for (int attempt = 0; attempt < 3 && port == 0; ++attempt) {
        const int p = pick_free_port();
        exporter.spawn({exe, "-redis.addr", "redis://127.0.0.1:" + std::to_string(c.proxy->port()),
                        "-web.listen-address", "127.0.0.1:" + std::to_string(p), "-export-client-list",
                        "-include-config-metrics", "-ping-on-connect"},
                       log);
        wait_until("the exporter to listen", 10, [&] {
            if (!exporter.running()) return true;  // the port was taken: another one
            try {
                return http_get(p, "/", 2).status == 200;
            } catch (const std::exception&) {
                return false;
            }
        });
        if (exporter.running()) port = p;
    }
    REQUIRE_MESSAGE(port != 0, "the exporter did not start:\n" << tail_file(log, 20));

    // A few scrapes; then one taken between two /status readings that agree (the proxy's
    // own PING every 10 s moves the offset, each replica's ACK every second its offset).
    auto offsets = [](const json& st) {
        std::string all = std::to_string(json_int(st, "/proxy/offset"));
        for (const auto& r : st.at("replicas")) all += "," + std::to_string(r.at("acked_offset").get<int64_t>());
        return all;
    };
    for (int i = 0; i < 3; ++i) {
        HttpResponse r = http_get(port, "/metrics", 10);
        REQUIRE(r.status == 200);
        CHECK(sample(r.body, "redis_up") == 1);
        sleep_ms(300);
    }
    std::string text;
    json s;
    wait_until("a scrape between two equal /status offsets", 30, [&] {
        const json before = c.proxy->status();
        text = http_get(port, "/metrics", 10).body;
        s = c.proxy->status();
        return offsets(before) == offsets(s);
    });
    int replicas = 0;
    for (const auto& r : s.at("replicas")) replicas += r.at("state") != "handshake";
    CHECK(replicas == 2);
    CHECK(sample(text, "redis_up") == 1);
    CHECK(sample(text, "redis_exporter_last_scrape_error") == 0);
    CHECK(sample(text, "redis_connected_slaves") == replicas);
    const int64_t offset = json_int(s, "/proxy/offset");
    CHECK(sample(text, "redis_master_repl_offset") == static_cast<double>(offset));
    // The backlog is the log PSYNC can be served from: first retained offset to the end.
    CHECK(sample(text, "redis_replication_backlog_bytes") ==
          static_cast<double>(offset + 1 - json_int(s, "/log/first_offset")));
    for (auto& r : c.replicas) {
        const json entry = find_replica(s, r->port());
        CHECK(sample(text, "redis_connected_slave_offset_bytes", "slave_port=\"" + std::to_string(r->port()) + "\"") ==
              static_cast<double>(json_int(entry, "/acked_offset")));
    }
    CHECK(sample(text, "redis_connected_clients") >= 1);
    CHECK(sample(text, "redis_config_maxclients") == 1000);
    CHECK(text.find("name=\"redis_exporter\"") != std::string::npos);  // CLIENT SETNAME, seen in CLIENT LIST
    exporter.stop();

    // Its log: nothing at warning level or above (today's proxy answers every command it sends).
    std::ifstream in(log);
    int lines = 0;
    for (std::string line; std::getline(in, line);) {
        ++lines;
        CHECK_MESSAGE(line.find("level=error") == std::string::npos, line);
        CHECK_MESSAGE(line.find("level=warning") == std::string::npos, line);
        CHECK_MESSAGE(line.find("level=fatal") == std::string::npos, line);
    }
    CHECK(lines >= 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("wait: a live restart answers a blocked WAIT with the count at that moment and the next image runs what followed") {
    ProxiedCluster c;
    c.start(1, 50);
    RedisServer& replica = *c.replicas[0];
    wait_until("the replica to have ACKed", 10, [&] { return proxy_command(*c.proxy, {"WAIT", "1", "0"}).integer == 1; });
    const int64_t before = json_int(c.proxy->status(), "/proxy/offset");
    replica.process().signal(SIGSTOP);
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.proxy->wait_status("the burst in the proxy's log", 10, [&](const json& s, std::string&) {
        return json_int(s, "/proxy/offset") > before;
    });
    ScriptedReplica w(c.proxy->port());
    w.send("WAIT 1 0\r\nECHO after-wait\r\n");
    CHECK(w.read_for(1).empty());

    c.proxy->process().signal(SIGUSR2);
    // The frozen replica has not acknowledged the burst: 0, then the ECHO, from the new image.
    CHECK(w.read_line(30) == ":0");
    CHECK(w.read_line(10) == "$10");
    CHECK(w.read_line(5) == "after-wait");
    c.proxy->wait_status("the live restart done", 30, [](const json& s, std::string&) {
        return json_int(s, "/proxy/live_restarts") == 1 && json_str(s, "/proxy/live_restart/state") == "idle";
    });
    replica.process().signal(SIGCONT);
    write_burst(m, ProxiedCluster::kDbs, 2);
    c.wait_replicas_equal();
    CHECK(proxy_command(*c.proxy, {"WAIT", "1", "5000"}).integer == 1);
    check_clean_shutdown(*c.proxy);
}
