// What a restart will rely on (issue 11, first part): the data directory describes the
// proxy's lineage at every moment, and survives the proxy being killed. manifest.json lists the
// snapshot and the log segments as they are on disk, and commit.rec holds a commit point at
// least as new as anything any replica was sent (backlog/manifest.h, invariants M1 and C1).
#include <doctest/doctest.h>

#include <csignal>
#include <fstream>

#include "backlog/manifest.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/process.h"
#include "tests/support/keyspace.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// Runs the proxy binary once on `proxy`'s ports and directory and waits for it to exit:
// "exit <code>" and what it printed.
std::string run_proxy_once(ProxyProcess& proxy, int upstream_port, const std::vector<std::string>& extra) {
    Process p;
    std::vector<std::string> argv = {PSYNC_PROXY_BIN, "--upstream", "127.0.0.1:" + std::to_string(upstream_port),
                                     "--port", std::to_string(proxy.port()), "--status-port",
                                     std::to_string(proxy.status_port()), "--dir", proxy.data_dir()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const std::string out_path = proxy.data_dir() + "/../once.log";
    p.spawn(argv, out_path);
    const auto code = p.wait_exit(15);
    std::ifstream f(out_path);
    std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return "exit " + (code ? std::to_string(*code) : std::string("(still running)")) + "\n" + out;
}

}  // namespace

TEST_CASE("restart: killed with SIGKILL under writes, the proxy leaves a data directory that describes its lineage: the commit record holds what every replica was sent") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient c = master.client();
        for (int db : {0, 1, 5}) fill_dataset(c, db, 60);
    }
    ProxyOptions options;
    options.extra_args = {"--log-segment-size", "16kb"};
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    proxy.start();
    const json first = proxy.wait_snapshot();
    RedisServer r1(sandbox, "replica1", replica_options(proxy.port()));
    r1.start();
    proxy.wait_replica_online(r1.port());

    BackgroundWriter writer(master.port(), {0, 1, 5});
    writer.wait_more_rounds(200);
    proxy.process().signal(SIGKILL);
    writer.stop();
    wait_until("the proxy to be gone", 10, [&] { return !proxy.running(); });
    // What the replica has applied is at most what it was sent.
    const int64_t replica_offset = r1.info_int("replication", "master_repl_offset");

    std::string error;
    const auto m = psync::backlog::read_manifest(proxy.data_dir(), error);
    REQUIRE_MESSAGE(m, error);
    const auto rec = psync::backlog::CommitRecord::read(proxy.data_dir(), error);
    REQUIRE_MESSAGE(rec, error);
    CHECK(rec->this_boot);
    CHECK(m->replid == json_str(first, "/proxy/replid"));
    REQUIRE(m->snapshot);
    CHECK(m->snapshot->offset == static_cast<uint64_t>(json_int(first, "/snapshot/offset")));
    CHECK(m->segments.size() >= 2);  // the log went over several 16 KB segments
    CHECK_MESSAGE(rec->committed_end >= static_cast<uint64_t>(replica_offset),
                  "commit.rec " << rec->committed_end << " behind the replica's " << replica_offset);
    CHECK(rec->committed_end >= psync::backlog::log_end(*m));
    std::string warnings;
    CHECK(psync::backlog::check_files(proxy.data_dir(), *m, rec->committed_end, warnings) == "");
    // The only strays allowed: a segment the kill caught between its creation and the commit
    // that would have listed it (its bytes were never committed, never sent).
    CHECK_MESSAGE((warnings.empty() || warnings.find("past the commit point (never committed)") != std::string::npos),
                  warnings);

    // Started again: the lineage is reopened, then (a SYNC-only master cannot be resumed) a new
    // SYNC starts a new one, and the replica follows.
    proxy.start();
    proxy.wait_snapshot();
    master.client().must({"SET", "after", "the restart"});
    wait_keyspace_equal(master, r1);
    check_clean_shutdown(proxy);
}

TEST_CASE("restart: a PSYNC master, the proxy killed with SIGKILL under writes and started again on the same --dir: no second fork, no replica full-resyncs again, equal in every db") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master");  // Redis 7 with PSYNC
    master.start();
    {
        RedisClient c = master.client();
        for (int db : {0, 1, 5}) fill_dataset(c, db, 60);
    }
    ProxyProcess proxy(sandbox, "proxy", master.port());
    proxy.start();
    const json first = proxy.wait_snapshot();
    const std::string replid = json_str(first, "/proxy/replid");
    RedisServer r1(sandbox, "replica1", replica_options(proxy.port()));
    RedisServer r2(sandbox, "replica2", replica_options(proxy.port()));
    r1.start();
    r2.start();
    proxy.wait_replica_online(r1.port());
    proxy.wait_replica_online(r2.port());

    BackgroundWriter writer(master.port(), {0, 1, 5});
    writer.wait_more_rounds(50);
    proxy.process().signal(SIGKILL);
    wait_until("the proxy to be gone", 10, [&] { return !proxy.running(); });
    writer.wait_more_rounds(50);  // the master moves on while the proxy is down
    proxy.start();
    proxy.wait_status("the upstream link resumed", 30, [](const json& st, std::string& state) {
        state = json_str(st, "/upstream/state") + ", partial resyncs " + json_at(st, "/counters/upstream_partial_resyncs").dump();
        return json_str(st, "/upstream/state") == "streaming" && json_int(st, "/counters/upstream_partial_resyncs") >= 1;
    });
    writer.wait_more_rounds(50);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(master, r1);
    wait_keyspace_equal(master, r2);

    const json s = proxy.status();
    CHECK(json_str(s, "/proxy/replid") == replid);
    CHECK(master.info_int("stats", "total_forks") == 1);
    CHECK(master.info_int("stats", "sync_partial_ok") == 1);
    CHECK(json_int(s, "/counters/sync_full") == 0);  // since the restart
    CHECK(json_int(s, "/counters/sync_partial_ok") == 2);
    for (RedisServer* r : {&r1, &r2}) {
        CHECK(r->log_count("Full resync from master") == 1);
        CHECK(r->info_field("replication", "master_replid") == replid);
    }
    check_clean_shutdown(proxy);
}

TEST_CASE("restart: a torn tail (half a command written past the last commit) is cut at start, the replicas resume, data equal") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master");
    master.start();
    ProxyProcess proxy(sandbox, "proxy", master.port());
    proxy.start();
    const json first = proxy.wait_snapshot();
    RedisServer r1(sandbox, "replica1", replica_options(proxy.port()));
    r1.start();
    proxy.wait_replica_online(r1.port());
    for (int i = 0; i < 100; ++i) master.client().must({"SET", "k" + std::to_string(i), "v"});
    wait_keyspace_equal(master, r1);
    proxy.stop();  // SIGTERM: a clean stop...
    std::string error;
    auto m = psync::backlog::read_manifest(proxy.data_dir(), error);
    REQUIRE_MESSAGE(m, error);
    REQUIRE(!m->segments.empty());
    {
        // ... then what a crash mid-write leaves: half a command past the last commit.
        std::ofstream f(proxy.data_dir() + "/" + m->segments.back().file, std::ios::binary | std::ios::app);
        f << "*3\r\n$3\r\nSET\r\n$4\r\ntorn";
    }
    proxy.start();
    proxy.wait_snapshot();
    CHECK(count_log_lines(proxy.log_path(), "reopened lineage " + json_str(first, "/proxy/replid")) == 1);
    master.client().must({"SET", "after", "the restart"});
    wait_keyspace_equal(master, r1);
    CHECK(r1.keyspace().count({0, "torn"}) == 0);
    CHECK(r1.log_count("Full resync from master") == 1);
    CHECK(json_int(proxy.status(), "/counters/sync_partial_ok") == 1);
    check_clean_shutdown(proxy);
}

TEST_CASE("restart: a manifest from a future format, or garbage: one clear error line and exit code 2; with --dir-recover yes a fresh start that says what it discarded") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    ProxyProcess proxy(sandbox, "proxy", master.port());
    proxy.start();
    proxy.wait_snapshot();
    proxy.stop();
    const std::string path = proxy.data_dir() + "/manifest.json";
    std::string text;
    {
        std::ifstream f(path);
        text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    const size_t at = text.find("\"format\": 1");
    REQUIRE(at != std::string::npos);
    for (const std::string& bad : {text.substr(0, at) + "\"format\": 2" + text.substr(at + 11), std::string("{ not json at all")}) {
        std::ofstream(path, std::ios::trunc) << bad;
        const std::string out = run_proxy_once(proxy, master.port(), {});
        CHECK_MESSAGE(out.find("exit 2") != std::string::npos, out);
        CHECK_MESSAGE(out.find("manifest.json") != std::string::npos, out);
        CHECK_MESSAGE(out.find("--dir-recover yes") != std::string::npos, out);
    }
    // Discarded with --dir-recover yes: a new lineage, and the log says why.
    ProxyOptions recover;
    recover.extra_args = {"--dir-recover", "yes"};
    recover.data_dir = proxy.data_dir();
    ProxyProcess again(sandbox, "again", master.port(), recover);
    again.start();
    again.wait_snapshot();
    CHECK(count_log_lines(again.log_path(), "starting a new lineage, discarding what", true) == 1);
    check_clean_shutdown(again);
}
