// Limits a client can push the proxy against, with real processes on loopback: the process's
// file descriptors (RLIMIT_NOFILE) and the number of connections to the status port. Past each: a clear answer or error to the
// client, a bounded number of log lines, bounded CPU and memory, and recovery once the
// clients are gone.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

[[maybe_unused]] ProxyOptions with_args(std::vector<std::string> args) {
    ProxyOptions o;
    o.extra_args = std::move(args);
    return o;
}

// What one connection got: "+PONG" to a PING, the proxy's refusal line, or "(no answer)".
std::string ping_or_refusal(ScriptedReplica& conn) {
    std::string early = conn.read_for(0.05);  // a refusal comes unasked, right after accept
    if (!early.empty()) return early.substr(0, early.find("\r\n"));
    try {
        conn.send("PING\r\n");
        return conn.read_line(3);
    } catch (const std::exception&) {
        std::string late = conn.take_buffered();
        return late.empty() ? "(no answer)" : late.substr(0, late.find("\r\n"));
    }
}

}  // namespace

TEST_CASE("limits: out of file descriptors: no busy loop, few log lines, a clear refusal, then new replicas are served again") {
    ProxiedCluster c;
    constexpr int kFdLimit = 32;
    ProxyOptions options;
    options.open_files_limit = kFdLimit;
    options.log_level = "info";
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), options);
    c.start(0, 20);
    const pid_t pid = c.proxy->process().pid();
    const std::string log = c.proxy->log_path();
    const int fds_at_start = open_fds(pid);
    REQUIRE_MESSAGE((fds_at_start > 0 && fds_at_start < kFdLimit - 4),
                    "the proxy uses " << fds_at_start << " descriptors at start: no room for clients");

    // More clients than descriptors left; connect() succeeds through the listen backlog.
    constexpr int kClients = 40;
    std::vector<std::unique_ptr<ScriptedReplica>> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(std::make_unique<ScriptedReplica>(c.proxy->port()));
    wait_until("the proxy at its descriptor limit", 10, [&](std::string& state) {
        state = std::to_string(open_fds(pid)) + " fds open";
        return open_fds(pid) >= kFdLimit - 1;
    });

    // Held for 3 s: the proxy idles (no busy loop on the listening socket) and logs a few lines.
    const double cpu_before = cpu_seconds(pid);
    sleep_ms(3000);
    const double cpu_used = cpu_seconds(pid) - cpu_before;
    const int emfile_lines = count_log_lines(log, "Too many open files");
    INFO("CPU " << cpu_used << " s in 3 s with " << kClients << " clients held; " << emfile_lines
                << " log lines about EMFILE; first ones:\n" << grep_log(log, "Too many open files", 3));
    MESSAGE("CPU " << cpu_used << " s in 3 s with " << kClients << " clients held; " << emfile_lines
                   << " log lines about EMFILE");
    CHECK_MESSAGE(cpu_used < 0.5, "the proxy used " << cpu_used << " s of CPU in 3 s while out of descriptors");
    CHECK_MESSAGE((emfile_lines >= 1 && emfile_lines <= 3), emfile_lines << " log lines about EMFILE in 3 s");

    // Every client got an answer: served (PONG) or refused with an error, none left hanging.
    int served = 0, refused = 0;
    std::vector<std::string> others;
    for (auto& conn : clients) {
        const std::string got = ping_or_refusal(*conn);
        if (got == "+PONG") {
            ++served;
        } else if (got.rfind("-ERR max number of clients reached", 0) == 0) {
            ++refused;
        } else {
            others.push_back(got);
        }
    }
    CHECK_MESSAGE(others.empty(), others.size() << " clients got neither PONG nor a refusal, e.g. " << others.at(0));
    CHECK_MESSAGE(served >= 1, "no client was served");
    CHECK_MESSAGE(refused >= kClients - kFdLimit, "only " << refused << " clients were refused");
    // Meanwhile the status port answers too (503: it is out of descriptors as well, or 200).
    try {
        const HttpResponse r = http_get(c.proxy->status_port(), "/status", 3);
        CHECK_MESSAGE((r.status == 503 || r.status == 200), r.status << " " << r.body);
    } catch (const std::exception& e) {
        FAIL_CHECK("GET /status while out of descriptors: " << std::string(e.what()));
    }

    // The clients leave: a real Redis 7 replica is accepted and gets the master's data.
    clients.clear();
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    RedisServer& r = c.add_replica("replica-after");
    c.proxy->wait_replica_online(r.port(), 30);
    wait_keyspace_equal(c.master, r, 30);
    CHECK(count_log_lines(log, "Too many open files") <= 4);
    const json s = c.proxy->status();
    CHECK(json_int(s, "/counters/rejected_connections") >= refused);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("limits: the status port: past 64 open connections a new one gets 503 at once; idle ones are closed after 5 s") {
    ProxiedCluster c;
    c.start(1, 10);
    // 64 connections that never send a request.
    std::vector<std::unique_ptr<ScriptedReplica>> idle;
    for (int i = 0; i < 64; ++i) idle.push_back(std::make_unique<ScriptedReplica>(c.proxy->status_port()));
    sleep_ms(300);  // all accepted
    const auto t0 = Clock::now();
    const HttpResponse busy = http_get(c.proxy->status_port(), "/status", 3);
    CHECK_MESSAGE(busy.status == 503, busy.status << " " << busy.body);
    CHECK_MESSAGE(busy.body.find("too many status connections") != std::string::npos, busy.body);
    CHECK(seconds_since(t0) < 1.0);
    CHECK(count_log_lines(c.proxy->log_path(), "status connections open at once", true) == 1);
    // The replica port is not affected.
    ScriptedReplica client(c.proxy->port());
    client.send("PING\r\n");
    CHECK(client.read_line(5) == "+PONG");
    // The proxy closes the idle ones after its 5 s request timeout; then /status answers.
    int closed = 0;
    for (auto& conn : idle) closed += conn->wait_closed(8) ? 1 : 0;
    CHECK(closed == 64);
    const HttpResponse ok = http_get(c.proxy->status_port(), "/status", 3);
    CHECK_MESSAGE(ok.status == 200, ok.status << " " << ok.body);
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.wait_replicas_equal();
    check_clean_shutdown(*c.proxy);
}
