// Security: --requirepass / --requireuser for replicas, --masterauth for the upstream, no
// secret in /status, INFO or the log, the status endpoint bound apart from the replication
// port, protected mode (checked end to end from a non-loopback address inside a network
// namespace this test creates and deletes), and the modes of the data directory and its files.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <thread>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/ports.h"
#include "tests/support/process.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

#ifndef PSYNC_PROXY_BIN
#error "PSYNC_PROXY_BIN must be defined by the build"
#endif

using namespace psync::test;
using nlohmann::json;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Connects to host:port (IPv4) in the calling thread's network namespace; -1 if refused.
int tcp_connect(const std::string& host, int port, double timeout_s = 2) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    timeval tv{static_cast<time_t>(timeout_s), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Sends `request` and reads until the peer closes or `timeout_s` passes, or (with
// `until_line`) until a first "\r\n". "(refused)" if the connection is refused; with
// `closed`, whether the peer closed the connection.
std::string exchange(const std::string& host, int port, const std::string& request, double timeout_s = 2,
                     bool until_line = false, bool* closed = nullptr) {
    int fd = tcp_connect(host, port, timeout_s);
    if (fd < 0) return "(refused)";
    if (!request.empty()) {
        ssize_t ignored = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
        (void)ignored;
    }
    std::string out;
    char buf[65536];
    const auto start = Clock::now();
    while (seconds_since(start) < timeout_s) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            if (closed) *closed = true;
            break;
        }
        out.append(buf, static_cast<size_t>(n));
        if (until_line && out.find("\r\n") != std::string::npos) break;
    }
    ::close(fd);
    return out;
}

// The one reply line to a command sent alone on a new connection.
std::string reply_line(int port, const Command& cmd) {
    ScriptedReplica conn(port);
    conn.send(multibulk(cmd));
    return conn.read_line(5);
}

void check_no_secret(const std::string& where, const std::string& text, const std::vector<std::string>& secrets) {
    for (const auto& s : secrets) CHECK_MESSAGE(text.find(s) == std::string::npos, where << " shows the secret '" << s << "'");
}

// Options, spelled out (GCC 12 warns about designated initializers that leave members out).
ProxyOptions proxy_options(const std::string& requirepass, const std::string& masterauth = "",
                           std::vector<std::string> args = {}, const std::string& data_dir = "") {
    ProxyOptions o;
    o.requirepass = requirepass;
    o.masterauth = masterauth;
    o.extra_args = std::move(args);
    o.data_dir = data_dir;
    return o;
}
RedisServerOptions replica_config(std::vector<std::string> lines) {
    RedisServerOptions o;
    o.extra_config = std::move(lines);
    return o;
}

// A SYNC-only master whose clients must AUTH with `password` (set after it was filled with
// data, since the harness reads servers without AUTH).
void require_password(RedisServer& master, const std::string& password) {
    master.client().must({"CONFIG", "SET", "requirepass", password});
}
void drop_password(RedisServer& master, const std::string& password) {
    RedisClient c = master.client();
    c.must({"AUTH", password});
    c.must({"CONFIG", "SET", "requirepass", ""});
}

}  // namespace

TEST_CASE("security: --requirepass: before AUTH everything but AUTH and QUIT gets -NOAUTH, and replicas need masterauth") {
    ProxiedCluster c;
    const std::string password = "rp-Secret-4711";
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), proxy_options(password));
    c.start(0);
    const int port = c.proxy->port();

    for (const Command& cmd : std::vector<Command>{{"PSYNC", "?", "-1"}, {"SYNC"}, {"INFO"}, {"INFO", "replication"},
                                                   {"ROLE"}, {"PING"}, {"REPLCONF", "listening-port", "1"}}) {
        CAPTURE(cmd[0]);
        ScriptedReplica conn(port);
        conn.send(multibulk(cmd));
        CHECK(conn.read_line(5) == "-NOAUTH Authentication required.");
        // Nothing else: no payload, no INFO text.
        CHECK(conn.read_for(0.3).empty());
        CHECK_FALSE(conn.closed());
    }
    const std::string wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.";
    CHECK(reply_line(port, {"AUTH", "wrong"}) == wrongpass);
    CHECK(reply_line(port, {"AUTH", "default", "wrong"}) == wrongpass);
    CHECK(reply_line(port, {"AUTH", "nobody", password}) == wrongpass);
    CHECK(reply_line(port, {"AUTH", password + "x"}) == wrongpass);
    CHECK(reply_line(port, {"AUTH", password.substr(0, 5)}) == wrongpass);
    CHECK(reply_line(port, {"AUTH", ""}) == wrongpass);
    {
        ScriptedReplica q(port);
        q.send(multibulk({"QUIT"}));
        CHECK(q.read_line(5) == "+OK");
        CHECK(q.wait_closed(5));
    }
    {
        ScriptedReplica ok(port);
        ok.send(multibulk({"AUTH", password}));
        CHECK(ok.read_line(5) == "+OK");
        ok.send(multibulk({"INFO", "replication"}));
        const std::string len = ok.read_line(5);
        REQUIRE(len.rfind("$", 0) == 0);
        CHECK(ok.read_exact(std::stoul(len.substr(1)) + 2).find("role:master") != std::string::npos);
        ok.send(multibulk({"PSYNC", "?", "-1"}));
        CHECK(ok.read_line(5).rfind("+FULLRESYNC " + json_str(c.proxy->status(), "/proxy/replid"), 0) == 0);
    }
    {
        ScriptedReplica userpass(port);
        userpass.send(multibulk({"AUTH", "default", password}));
        CHECK(userpass.read_line(5) == "+OK");
    }

    // Real replicas: with masterauth one syncs; without, one never gets a byte of data.
    RedisServer& good = c.add_replica("with-masterauth", replica_config({"masterauth " + password}));
    RedisServer& bad = c.add_replica("without-masterauth");
    c.proxy->wait_replica_online(good.port());
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    wait_keyspace_equal(c.master, good);
    sleep_ms(1500);
    CHECK(bad.keyspace().empty());
    CHECK(bad.info_field("replication", "master_link_status") == "down");
    CHECK(find_replica(c.proxy->status(), bad.port()).is_null());
    CHECK(json_int(c.proxy->status(), "/counters/sync_full") == 2);  // the raw PSYNC and the good replica

    CHECK(count_log_lines(c.proxy->log_path(), "AUTH failed", true) >= 6);
    check_no_secret("/status", http_get(c.proxy->status_port(), "/status").body, {password});
    check_no_secret("the proxy's log", read_file(c.proxy->log_path()), {password});
    c.replicas.pop_back();  // stop the replica that cannot sync before the proxy
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("security: --requireuser: AUTH <user> <password> with that user, as a replica with masteruser sends it") {
    ProxiedCluster c;
    const std::string password = "pw-for-alice";
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(),
                                             proxy_options(password, "", {"--requireuser", "alice"}));
    c.start(0);
    const int port = c.proxy->port();
    const std::string wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.";
    CHECK(reply_line(port, {"AUTH", "alice", password}) == "+OK");
    CHECK(reply_line(port, {"AUTH", "alice", "wrong"}) == wrongpass);
    CHECK(reply_line(port, {"AUTH", "default", password}) == wrongpass);
    CHECK(reply_line(port, {"AUTH", "bob", password}) == wrongpass);

    RedisServer& r = c.add_replica("alice-replica",
                                   replica_config({"masteruser alice", "masterauth " + password}));
    c.proxy->wait_replica_online(r.port(), 10);
    c.wait_replicas_equal();
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("security: --masterauth: the proxy authenticates to its master, and a wrong or missing one is a clear error") {
    Sandbox sandbox;
    const std::string password = "up-Secret-0815";
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient m = master.client();
        for (int db : {0, 1, 5}) fill_dataset(m, db, 50);
    }
    require_password(master, password);

    ProxyProcess wrong(sandbox, "proxy-wrong", master.port(), proxy_options("", "not-" + password));
    ProxyProcess none(sandbox, "proxy-none", master.port());
    ProxyProcess right(sandbox, "proxy", master.port(), proxy_options("", password));
    wrong.start();
    none.start();
    right.start();
    right.wait_snapshot();
    RedisServer replica(sandbox, "replica", replica_options(right.port()));
    replica.start();
    right.wait_replica_online(replica.port());
    {
        RedisClient m = master.client();
        m.must({"AUTH", password});
        write_burst(m, {0, 1, 5}, 1);
    }

    const json w = wrong.wait_status("the refused AUTH in /status", 15, [](const json& s, std::string&) {
        return !json_str(s, "/upstream/last_error").empty();
    });
    CHECK_MESSAGE(json_str(w, "/upstream/last_error").find("AUTH") != std::string::npos, w.dump());
    CHECK(json_at(w, "/snapshot").is_null());
    CHECK(count_log_lines(wrong.log_path(), "AUTH", true) >= 1);
    const json n = none.wait_status("the missing password in /status", 15, [](const json& s, std::string&) {
        return !json_str(s, "/upstream/last_error").empty() && json_str(s, "/upstream/state") != "waiting_payload";
    });
    const std::string none_error = json_str(n, "/upstream/last_error");
    CHECK_MESSAGE((none_error.find("NOAUTH") != std::string::npos || none_error.find("uthentication") != std::string::npos),
                  "the error does not say a password is needed: " << none_error);
    CHECK(json_at(n, "/snapshot").is_null());

    for (ProxyProcess* p : {&wrong, &none, &right}) {
        check_no_secret(p->name() + " /status", http_get(p->status_port(), "/status").body, {password, "not-" + password});
        check_no_secret(p->name() + " log", read_file(p->log_path()), {password});
    }
    drop_password(master, password);
    wait_keyspace_equal(master, replica);
    CHECK(master.info_int("stats", "sync_full") == 1);  // the right proxy only
    check_clean_shutdown(right);
    check_clean_shutdown(wrong);
    check_clean_shutdown(none);
}

TEST_CASE("security: the status endpoint bound apart from the replication port shows no secret anywhere") {
    Sandbox sandbox;
    const std::string masterauth = "ma-Secret-1234", requirepass = "rp-Secret-5678";
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient m = master.client();
        fill_dataset(m, 0, 30);
    }
    require_password(master, masterauth);

    const int port = pick_free_port(), status_port = pick_free_port();
    const std::string dir = sandbox.subdir("proxy");
    sandbox.watch_log("proxy log", dir + "/proxy.log");
    Process proxy;
    proxy.spawn({PSYNC_PROXY_BIN, "--upstream", "127.0.0.1:" + std::to_string(master.port()), "--bind", "127.0.0.1",
                 "--port", std::to_string(port), "--status-bind", "127.0.0.2", "--status-port",
                 std::to_string(status_port), "--dir", dir + "/data", "--masterauth", masterauth, "--requirepass",
                 requirepass, "--log-level", "debug"},
                dir + "/proxy.log");
    std::string status;
    wait_until("GET /status on 127.0.0.2 to show a snapshot", 20, [&](std::string& state) {
        status = exchange("127.0.0.2", status_port, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
        state = status.substr(0, 300);
        return status.rfind("HTTP/1.1 200", 0) == 0 && status.find("\"snapshot\": {") != std::string::npos;
    });
    // Each endpoint only where it was bound.
    CHECK(exchange("127.0.0.1", status_port, "GET /status HTTP/1.1\r\n\r\n") == "(refused)");
    CHECK(exchange("127.0.0.2", port, multibulk({"PING"})) == "(refused)");
    CHECK(exchange("127.0.0.1", port, multibulk({"PING"}), 1) == "-NOAUTH Authentication required.\r\n");

    const std::vector<std::string> secrets = {masterauth, requirepass};
    check_no_secret("/status", status, secrets);
    for (const std::string path : {"/healthz", "/nope", "/status?verbose=1", "/config", "/debug"}) {
        check_no_secret(path, exchange("127.0.0.2", status_port, "GET " + path + " HTTP/1.1\r\n\r\n"), secrets);
    }
    check_no_secret("INFO", exchange("127.0.0.1", port, multibulk({"AUTH", requirepass}) + multibulk({"INFO", "all"}), 1),
                    secrets);
    check_no_secret("the log", read_file(dir + "/proxy.log"), secrets);
    CHECK(proxy.stop(10) == 0);
}

namespace {

// A network namespace of this test (deleted when destroyed): lo up, plus a private address
// on lo so that a connection to it comes from a non-loopback address. Nothing outside the
// namespace is touched.
class TestNetns {
public:
    TestNetns() {
        std::mt19937 rng(std::random_device{}());
        name_ = "psync-test-" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 100000);
        log_ = "/tmp/" + name_ + ".log";
        try {
            ip_ = find_executable("ip");
        } catch (const std::exception&) {
            why_ = "no `ip` command (iproute2)";
            return;
        }
        if (run({ip_, "netns", "add", name_}) != 0) {
            why_ = "ip netns add failed (not permitted here?): " + tail_file(log_, 3);
            return;
        }
        created_ = true;
        if (run({ip_, "netns", "exec", name_, ip_, "link", "set", "lo", "up"}) != 0 ||
            run({ip_, "netns", "exec", name_, ip_, "addr", "add", address() + "/32", "dev", "lo"}) != 0) {
            why_ = "cannot set up the namespace: " + tail_file(log_, 3);
        }
    }
    ~TestNetns() {
        if (created_) run({ip_, "netns", "del", name_});
        ::unlink(log_.c_str());
    }
    bool ok() const { return created_ && why_.empty(); }
    const std::string& why() const { return why_; }
    const std::string& name() const { return name_; }
    const std::string& ip() const { return ip_; }
    static std::string address() { return "10.213.7.1"; }  // private, exists only in the namespace

    // Runs fn on a thread that has entered the namespace (sockets it creates live there).
    template <typename Fn>
    auto inside(Fn fn) -> decltype(fn()) {
        decltype(fn()) result{};
        std::string error;
        std::thread t([&] {
            int fd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
                error = "cannot enter the namespace";
                if (fd >= 0) ::close(fd);
                return;
            }
            ::close(fd);
            result = fn();
        });
        t.join();
        if (!error.empty()) throw std::runtime_error(error);
        return result;
    }

private:
    int run(const std::vector<std::string>& argv) {
        try {
            return run_command(argv, log_, 10);
        } catch (const std::exception&) {
            return -1;
        }
    }
    std::string name_, log_, ip_, why_;
    bool created_ = false;
};

}  // namespace

TEST_CASE("security: protected mode: with no password and a non-loopback bind, non-loopback peers get -DENIED") {
    TestNetns ns;
    if (!ns.ok()) {
        MESSAGE("SKIPPED: needs a network namespace (root, `ip netns`): " << ns.why());
        return;
    }
    Sandbox sandbox;
    // Three proxies in the namespace, bound to every address there (lo and the private one).
    struct Variant {
        std::string name;
        int port;
        std::vector<std::string> args;
    };
    const std::vector<Variant> variants = {
        {"protected", 16380, {}},
        {"protected-mode-no", 16381, {"--protected-mode", "no"}},
        {"password", 16382, {"--requirepass", "pw"}},
    };
    std::vector<std::unique_ptr<Process>> procs;
    for (const auto& v : variants) {
        const std::string dir = sandbox.subdir(v.name);
        sandbox.watch_log(v.name + " log", dir + "/proxy.log");
        std::vector<std::string> argv = {ns.ip(), "netns", "exec", ns.name(), PSYNC_PROXY_BIN,
                                         "--upstream", "127.0.0.1:1", "--bind", "0.0.0.0",
                                         "--port", std::to_string(v.port), "--status-port", "0",
                                         "--dir", dir + "/data", "--log-level", "debug"};
        argv.insert(argv.end(), v.args.begin(), v.args.end());
        procs.push_back(std::make_unique<Process>());
        procs.back()->spawn(argv, dir + "/proxy.log");
    }
    auto ask = [&](const std::string& host, int port) {
        return ns.inside([&] { return exchange(host, port, multibulk({"PING"}), 2, true); });
    };
    for (const auto& v : variants) {
        wait_until(v.name + " to answer on loopback", 15, [&] {
            const std::string r = ask("127.0.0.1", v.port);
            return r.find("PONG") != std::string::npos || r.find("NOAUTH") != std::string::npos;
        });
    }
    const std::string peer = TestNetns::address();
    bool closed = false;
    const std::string denied = ns.inside([&] { return exchange(peer, 16380, multibulk({"PING"}), 2, false, &closed); });
    CHECK_MESSAGE(denied.rfind("-DENIED ", 0) == 0, denied);
    for (const std::string hint : {"--requirepass", "--bind", "--protected-mode no"})
        CHECK_MESSAGE(denied.find(hint) != std::string::npos, "the -DENIED error does not mention " << hint << ": " << denied);
    CHECK_MESSAGE(denied.find("\r\n") == denied.size() - 2, "not exactly one error line: " << denied);
    CHECK_MESSAGE(closed, "the connection was not closed after -DENIED");
    CHECK(ask("127.0.0.1", 16380) == "+PONG\r\n");
    CHECK(ask(peer, 16381) == "+PONG\r\n");
    CHECK(ask(peer, 16382) == "-NOAUTH Authentication required.\r\n");
    CHECK(count_log_lines(sandbox.root() + "/protected/proxy.log", "protected mode", true) == 1);
    for (auto& p : procs) CHECK(p->stop(10) == 0);
}

TEST_CASE("security: the data directory is created with mode 0700 and every file in it with mode 0600") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient m = master.client();
        fill_dataset(m, 0, 50);
    }
    const std::string dir = sandbox.root() + "/not-yet/there/data";
    ProxyProcess proxy(sandbox, "proxy", master.port(), proxy_options("", "", {}, dir));
    // With umask 0 every bit of a mode is the proxy's own choice.
    const mode_t old_umask = ::umask(0);
    proxy.start();
    ::umask(old_umask);
    proxy.wait_snapshot();
    {
        RedisClient m = master.client();
        write_burst(m, {0}, 1);
    }
    proxy.wait_status("stream bytes in the log", 10, [](const json& s, std::string&) {
        return json_int(s, "/log/bytes_on_disk") > 0;
    });
    CHECK(file_mode(dir) == 0700);
    int files = 0;
    for (const auto& name : dir_entries(dir)) {
        CAPTURE(name);
        CHECK(file_mode(dir + "/" + name) == 0600);
        ++files;
    }
    CHECK(files >= 2);  // the snapshot and a log segment
    check_clean_shutdown(proxy);

    // The download in progress too.
    ScriptedMaster legacy;
    const std::string dir2 = sandbox.root() + "/fresh2";
    ProxyProcess downloading(sandbox, "proxy-download", legacy.port(), proxy_options("", "", {}, dir2));
    const mode_t again = ::umask(0);
    downloading.start();
    ::umask(again);
    legacy.accept_client();
    legacy.serve_until_sync();
    legacy.send("$100000\r\nREDIS0006" + std::string(50000, '\0'));
    downloading.wait_status("the download in progress", 10, [](const json& s, std::string&) {
        return json_str(s, "/upstream/state") == "transfer";
    });
    CHECK(file_mode(dir2) == 0700);
    CHECK(file_mode(dir2 + "/snapshot.rdb.tmp") == 0600);
    check_clean_shutdown(downloading);
}
