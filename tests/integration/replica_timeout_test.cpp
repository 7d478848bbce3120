// --replica-timeout, with real Redis 7 replicas, redis-cli --replica and scripted clients on
// loopback: an online replica that sends no ACK for the timeout is closed (one log line, a
// counter in /status and /metrics) and resumes with a partial resync once it is back; clients
// that never ACK by design (SYNC) are judged by their socket alone and stay while they read;
// a replica that takes no byte of the snapshot for the timeout is closed too.
#include <doctest/doctest.h>

#include <csignal>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

ProxyOptions with_args(std::vector<std::string> args) {
    ProxyOptions o;
    o.extra_args = std::move(args);
    return o;
}

int64_t timeouts(const json& status) { return json_int(status, "/counters/closed_replica_timeouts"); }

// The value of one sample of GET /metrics ("" if absent).
std::string metric(const ProxyProcess& proxy, const std::string& sample) {
    const HttpResponse r = http_get(proxy.status_port(), "/metrics");
    const size_t at = r.body.find("\n" + sample + " ");
    if (at == std::string::npos) return "";
    const size_t start = at + sample.size() + 2;
    return r.body.substr(start, r.body.find('\n', start) - start);
}

}  // namespace

TEST_CASE("replica timeout: a Redis 7 replica frozen with SIGSTOP is closed after --replica-timeout, counted, and resumes with +CONTINUE after SIGCONT") {
    ProxiedCluster c;
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), with_args({"--replica-timeout", "3"}));
    c.start(2);
    RedisServer& frozen = *c.replicas[0];
    RedisServer& other = *c.replicas[1];
    const SyncCounters before = sync_counters(c.proxy->status());
    const std::string log = c.proxy->log_path();

    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(20);
    frozen.process().signal(SIGSTOP);
    const auto frozen_at = Clock::now();
    const json s = c.proxy->wait_status("the frozen replica closed", 15, [&](const json& st, std::string& state) {
        state = "closed_replica_timeouts " + std::to_string(timeouts(st));
        return timeouts(st) == 1 && find_replica(st, frozen.port()).is_null();
    });
    const double after_s = seconds_since(frozen_at);
    CHECK_MESSAGE(after_s >= 2.5, "closed " << after_s << " s after the freeze, before the 3 s timeout");
    CHECK_MESSAGE(after_s < 7.0, "closed only " << after_s << " s after the freeze");
    // The other replica stays.
    CHECK(replica_field(s, other.port(), "state") == "online");
    // One clear line: who, why, the setting.
    const std::string who = "(listening port " + std::to_string(frozen.port()) + ")";
    const std::string lines = grep_log(log, who + " disconnected");
    INFO("log: " << lines);
    CHECK(count_log_lines(log, who + " disconnected") == 1);
    CHECK(lines.find("no REPLCONF ACK") != std::string::npos);
    CHECK(lines.find("--replica-timeout 3") != std::string::npos);
    CHECK(metric(*c.proxy, "psync_proxy_connections_refused_total{reason=\"replica_timeout\"}") == "1");

    writer.wait_more_rounds(20);  // the master moves on while the replica is frozen
    frozen.process().signal(SIGCONT);
    c.proxy->wait_status("the replica back online with a partial resync", 20, [&](const json& st, std::string& state) {
        state = sync_counters(st).describe();
        return json_int(st, "/counters/sync_partial_ok") == before.sync_partial_ok + 1 &&
               replica_field(st, frozen.port(), "state") == "online";
    });
    writer.wait_more_rounds(20);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    c.wait_replicas_equal();
    const json end = c.proxy->status();
    const SyncCounters after = sync_counters(end);
    CHECK_MESSAGE(after.sync_full == before.sync_full, before.describe() << " -> " << after.describe());
    CHECK(replica_field(end, frozen.port(), "sync") == "partial");
    CHECK(frozen.log_count("Successful partial resynchronization with master") == 1);
    CHECK(frozen.log_count("Full resync from master") == 1);
    CHECK(other.log_count("Connection with master lost") == 0);
    CHECK(timeouts(end) == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("replica timeout: redis-cli --replica (SYNC, never ACKs) and replicas that ACK stay past --replica-timeout") {
    ProxiedCluster c;
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), with_args({"--replica-timeout", "2"}));
    c.start(1, 20);
    const std::string out = c.sandbox.subdir("cli") + "/replica.out";
    c.sandbox.watch_log("redis-cli --replica", out);
    Process cli;
    cli.spawn({find_executable("redis-cli"), "-h", "127.0.0.1", "-p", std::to_string(c.proxy->port()), "--replica"}, out);
    wait_until("redis-cli --replica to finish its sync", 15,
               [&] { return tail_file(out, 50).find("Logging commands from master") != std::string::npos; });
    sleep_ms(5500);  // more than twice the timeout, with no write: only the proxy's PINGs flow
    RedisClient m = c.master.client();
    m.must({"SET", "cli:after", "still here"});
    wait_until("redis-cli --replica to print the SET", 10,
               [&] { return tail_file(out, 100).find("\"SET\",\"cli:after\",\"still here\"") != std::string::npos; });
    CHECK(cli.running());
    const json s = c.proxy->status();
    CHECK(timeouts(s) == 0);
    CHECK(json_at(s, "/replicas").size() == 2);
    c.wait_replicas_equal();
    CHECK(c.replicas[0]->log_count("Connection with master lost") == 0);
    cli.stop(5);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("replica timeout: a replica that takes no byte of the snapshot for --replica-timeout is closed, the others are served") {
    ProxiedCluster c;
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), with_args({"--replica-timeout", "2"}));
    fill_big_values(c.master, 400, 10000);  // a 4 MB snapshot: more than the socket buffers hold
    c.start(0, 10);
    ScriptedReplica stuck(c.proxy->port(), 4096);
    stuck.send(multibulk({"PSYNC", "?", "-1"}));  // then never reads
    c.proxy->wait_status("the stuck replica in send_bulk", 5, [&](const json& st, std::string&) {
        return replica_field(st, stuck.local_port(), "state") == "send_bulk" ||
               !json_at(st, "/replicas").empty();
    });
    const auto start = Clock::now();
    c.proxy->wait_status("the stuck replica closed", 10, [&](const json& st, std::string& state) {
        state = "closed_replica_timeouts " + std::to_string(timeouts(st));
        return timeouts(st) == 1 && json_at(st, "/replicas").empty();
    });
    CHECK(seconds_since(start) >= 1.0);
    CHECK(count_log_lines(c.proxy->log_path(), "took no byte of the snapshot") == 1);
    // A replica that reads gets the same snapshot.
    RedisServer& r = c.add_replica("replica1");
    c.proxy->wait_replica_online(r.port(), 30);
    c.wait_replicas_equal();
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("replica timeout: a SYNC client that stops reading (as a 2.6 replica loading a big RDB) is judged by its socket and stays") {
    ProxiedCluster c;
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), with_args({"--replica-timeout", "2"}));
    c.start(0, 10);
    ScriptedReplica sync_client(c.proxy->port(), 4096);
    sync_client.send("SYNC\r\n");
    sync_client.read_payload(10);  // the snapshot; from here on it reads nothing more
    c.proxy->wait_status("the SYNC client online", 5, [&](const json& st, std::string&) {
        return json_at(st, "/replicas").size() == 1 && json_str(json_at(st, "/replicas")[0], "/state") == "online";
    });
    // Writes fill its socket's window: the peer's kernel only answers window probes. For
    // three times the timeout it is still listed, never counted as timed out.
    const json before = c.proxy->status();
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    const auto start = Clock::now();
    while (seconds_since(start) < 6.0) {
        const json st = c.proxy->status();
        REQUIRE_MESSAGE(json_at(st, "/replicas").size() == 1, "the SYNC client was closed: " << st.dump());
        sleep_ms(250);
    }
    writer.stop();
    CHECK_MESSAGE(json_int(c.proxy->status(), "/proxy/offset") - json_int(before, "/proxy/offset") > 100 * 1024,
                  "the writes did not fill the client's window");
    CHECK(timeouts(c.proxy->status()) == 0);
    // It reads again: the stream goes on, multibulk from where it was.
    const json now = c.proxy->status();
    sync_client.begin_stream(static_cast<uint64_t>(json_int(now, "/snapshot/offset")) + 1);
    sync_client.read_stream_until(static_cast<uint64_t>(json_int(now, "/proxy/offset")), 30);
    CHECK_NOTHROW(sync_client.stream_commands());
    check_clean_shutdown(*c.proxy);
}
