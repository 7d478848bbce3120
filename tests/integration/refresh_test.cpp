// Snapshot refresh within a lineage (proxy/refresher.h), against a real SYNC-only Redis 7
// master: a second SYNC link placed in the live stream with PUBLISH markers, served from
// then on as +FULLRESYNC <replid> X-len(SELECT), the RDB, SELECT <db at X>, the log from X+1;
// retention of the log to --backlog-size before the snapshot.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>

#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

json wait_refreshed(const ProxyProcess& proxy, int64_t done, double timeout_s = 60) {
    return proxy.wait_status("snapshot refresh number " + std::to_string(done), timeout_s,
                             [done](const json& s, std::string& state) {
                                 state = json_at(s, "/refresh").dump();
                                 return json_int(s, "/refresh/done") >= done && json_str(s, "/refresh/state") == "idle";
                             });
}

uint64_t dir_bytes(const std::string& dir) {
    uint64_t total = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.is_regular_file()) total += e.file_size();
    }
    return total;
}

}  // namespace

TEST_CASE("refresh: BGSAVE on the proxy under writes in dbs 0 1 5 7: the snapshot moves, replicas attached before never full-resync again, one attached after ends equal") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient c = master.client();
        for (int db : {0, 1, 5, 7}) fill_dataset(c, db, 80);
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
    wait_keyspace_equal(master, r1);

    BackgroundWriter writer(master.port(), {0, 1, 5, 7});
    writer.wait_more_rounds(30);
    const int64_t offset_before = json_int(proxy.status(), "/snapshot/offset");
    RedisClient admin = RedisClient::connect(proxy.port());
    const Reply started = admin.command({"BGSAVE"});
    CHECK_MESSAGE(started.str == "Background saving started", started.describe());
    CHECK(admin.command({"BGSAVE"}).is_error());  // one at a time
    json s = wait_refreshed(proxy, 1);
    writer.wait_more_rounds(30);

    // The snapshot moved within the lineage; the alignment says where and in which db.
    s = proxy.status();
    const int64_t x = json_int(s, "/snapshot/offset");
    CHECK(x > offset_before);
    CHECK(json_str(s, "/proxy/replid") == replid);
    CHECK(json_int(s, "/refresh/alignment/offset") == x);
    CHECK(json_int(s, "/snapshot/fullresync_offset") == x - static_cast<int64_t>(std::string("*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n").size()));
    const std::string info = admin.must({"INFO", "persistence"}).str;
    CHECK(info_value(info, "rdb_bgsave_in_progress") == "0");
    CHECK(info_value(info, "rdb_last_bgsave_status") == "ok");
    CHECK(info_value(info, "rdb_saves") == "1");

    // A replica attached now gets the new snapshot at its offset, and the stream in the right db.
    RedisServer r3(sandbox, "replica3", replica_options(proxy.port()));
    r3.start();
    proxy.wait_replica_online(r3.port());
    writer.wait_more_rounds(30);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(master, r1);
    wait_keyspace_equal(master, r2);
    wait_keyspace_equal(master, r3);
    CHECK(r3.log_count("Full resync from master: " + replid + ":" +
                       std::to_string(json_int(s, "/snapshot/fullresync_offset"))) == 1);
    for (RedisServer* r : {&r1, &r2}) {
        CHECK(r->log_count("Full resync from master") == 1);
        CHECK(r->log_count("Connection with master lost") == 0);
    }
    // The master forked once for the proxy and once for the refresh, never for a replica.
    CHECK(master.info_int("stats", "sync_full") == 2);
    check_clean_shutdown(proxy);
}

TEST_CASE("refresh: 120 MB of overwrites with automatic refreshes: the data directory stays bounded, the log's start moves, a late replica ends equal") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    fill_big_values(master, 20, 50'000);  // about 1 MB of data
    ProxyOptions options;
    options.backlog_size = "4mb";
    options.extra_args = {"--snapshot-min-interval", "1", "--snapshot-refresh-ratio", "2", "--log-segment-size", "1mb"};
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    proxy.start();
    proxy.wait_snapshot();
    RedisServer r1(sandbox, "replica1", replica_options(proxy.port()));
    r1.start();
    proxy.wait_replica_online(r1.port());

    // Overwrite the same 20 keys again and again: 120 MB of stream on a 1 MB dataset. At
    // every sample the data directory holds at most two snapshots, --backlog-size of log
    // before the snapshot, the log since the snapshot (the writes since the last refresh)
    // and one segment being cut: nothing older is kept.
    uint64_t worst_excess = 0;
    std::string worst;
    auto sample = [&] {
        const json st = proxy.status();
        if (st["snapshot"].is_null()) return;
        const uint64_t dir = dir_bytes(proxy.data_dir());
        const uint64_t snap = static_cast<uint64_t>(json_int(st, "/snapshot/bytes"));
        const uint64_t since = static_cast<uint64_t>(json_int(st, "/log/last_offset") - json_int(st, "/snapshot/offset"));
        const uint64_t bound = 2 * snap + (4u << 20) + since + 2 * (1u << 20);
        if (dir > bound && dir - bound > worst_excess) {
            worst_excess = dir - bound;
            worst = "dir " + std::to_string(dir) + " > bound " + std::to_string(bound) + " (snapshot " +
                    std::to_string(snap) + ", log since it " + std::to_string(since) + ")";
        }
    };
    {
        RedisClient c = master.client();
        for (int round = 0; round < 120; ++round) {
            std::vector<Command> cmds;
            for (int i = 0; i < 20; ++i) {
                cmds.push_back({"SET", "big:" + std::to_string(i), incompressible(50'000, static_cast<uint64_t>(round * 100 + i))});
            }
            c.must_pipeline(cmds);
            sample();
            if (round % 10 == 9) sleep_ms(300);  // lets a refresh run between bursts
        }
    }
    wait_keyspace_equal(master, r1, 60);
    sleep_ms(1500);  // one more trim tick
    sample();
    const json s = proxy.status();
    CHECK(json_int(s, "/refresh/done") >= 2);
    CHECK(json_int(s, "/log/first_offset") > 1);
    CHECK_MESSAGE(worst_excess == 0, worst);
    // Once the writes stop, what is left is about one snapshot and the backlog.
    CHECK(dir_bytes(proxy.data_dir()) < 2 * static_cast<uint64_t>(json_int(s, "/snapshot/bytes")) + (4u << 20) +
                                            static_cast<uint64_t>(json_int(s, "/log/last_offset") - json_int(s, "/snapshot/offset")) + (2u << 20));

    RedisServer late(sandbox, "late", replica_options(proxy.port()));
    late.start();
    proxy.wait_replica_online(late.port());
    wait_keyspace_equal(master, late, 60);
    CHECK(r1.log_count("Full resync from master") == 1);
    check_clean_shutdown(proxy);
}

TEST_CASE("refresh: a replica frozen past the retained log full-resyncs once when it comes back, the others never notice") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    fill_big_values(master, 10, 200'000);
    ProxyOptions options;
    options.backlog_size = "1mb";
    options.extra_args = {"--snapshot-refresh-ratio", "1000", "--log-segment-size", "256kb"};
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    proxy.start();
    proxy.wait_snapshot();
    RedisServer steady(sandbox, "steady", replica_options(proxy.port()));
    RedisServer frozen(sandbox, "frozen", replica_options(proxy.port()));
    steady.start();
    frozen.start();
    proxy.wait_replica_online(steady.port());
    proxy.wait_replica_online(frozen.port());
    wait_keyspace_equal(master, frozen);

    ::kill(frozen.process().pid(), SIGSTOP);
    {
        RedisClient c = master.client();
        // 40 MB: more than the sockets between the proxy and the frozen replica can hold.
        for (int round = 0; round < 20; ++round) {
            std::vector<Command> cmds;
            for (int i = 0; i < 10; ++i) cmds.push_back({"SET", "big:" + std::to_string(i), incompressible(200'000, static_cast<uint64_t>(round * 10 + i + 1000))});
            c.must_pipeline(cmds);
        }
    }
    RedisClient admin = RedisClient::connect(proxy.port());
    CHECK(admin.command({"BGSAVE"}).str == "Background saving started");
    wait_refreshed(proxy, 1);
    // The log now starts after the frozen replica's position.
    proxy.wait_status("the log trimmed past the frozen replica", 20, [&](const json& st, std::string& state) {
        state = "log.first_offset " + json_at(st, "/log/first_offset").dump() + ", frozen sent " +
                json_at(find_replica(st, frozen.port()), "/sent_offset").dump();
        return json_int(st, "/log/first_offset") > json_int(find_replica(st, frozen.port()), "/sent_offset") + 1;
    });
    ::kill(frozen.process().pid(), SIGCONT);
    wait_keyspace_equal(master, frozen, 60);
    wait_keyspace_equal(master, steady);
    CHECK(frozen.log_count("Full resync from master") == 2);
    CHECK(steady.log_count("Full resync from master") == 1);
    CHECK(steady.log_count("Connection with master lost") == 0);
    CHECK(count_log_lines(proxy.log_path(), "left the retained log") == 1);
    check_clean_shutdown(proxy);
}

TEST_CASE("refresh: a master that refuses PUBLISH: BGSAVE ends with a clear reason and no fork, the snapshot stays, /status says the disk grows") {
    Sandbox sandbox;
    RedisServerOptions mo = sync_only_master_options();
    mo.extra_config.push_back("rename-command PUBLISH \"\"");
    RedisServer master(sandbox, "master", mo);
    master.start();
    master.client().must({"SET", "k", "v"});
    ProxyProcess proxy(sandbox, "proxy", master.port());
    proxy.start();
    const json first = proxy.wait_snapshot();
    RedisServer r1(sandbox, "replica1", replica_options(proxy.port()));
    r1.start();
    proxy.wait_replica_online(r1.port());

    RedisClient admin = RedisClient::connect(proxy.port());
    CHECK(admin.command({"BGSAVE"}).str == "Background saving started");
    const json s = proxy.wait_status("the refresh to fail", 20, [](const json& st, std::string& state) {
        state = json_at(st, "/refresh").dump();
        return json_int(st, "/refresh/failed") >= 1 && json_str(st, "/refresh/state") == "idle";
    });
    CHECK_MESSAGE(json_str(s, "/refresh/last_error").find("refused PUBLISH") != std::string::npos, json_at(s, "/refresh").dump());
    CHECK(json_int(s, "/refresh/done") == 0);
    CHECK(s["refresh"]["alignment"].is_null());
    CHECK(json_str(s, "/log/retention").find("the disk grows") != std::string::npos);
    CHECK(json_int(s, "/snapshot/offset") == json_int(first, "/snapshot/offset"));
    CHECK(master.info_int("stats", "sync_full") == 1);  // no second SYNC: no fork
    CHECK(info_value(admin.must({"INFO", "persistence"}).str, "rdb_last_bgsave_status") == "err");
    CHECK(count_log_lines(proxy.log_path(), "snapshot refresh abandoned", true) == 1);
    master.client().must({"SET", "after", "refusal"});
    wait_keyspace_equal(master, r1);
    check_clean_shutdown(proxy);
}

TEST_CASE("refresh: --snapshot-refresh no: BGSAVE is refused with the reason, nothing is trimmed, /status says the disk grows") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    ProxyOptions options;
    options.backlog_size = "1kb";
    options.extra_args = {"--snapshot-refresh", "no", "--log-segment-size", "4kb"};
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    proxy.start();
    proxy.wait_snapshot();
    {
        RedisClient c = master.client();
        for (int i = 0; i < 200; ++i) c.must({"SET", "k" + std::to_string(i), std::string(200, 'x')});
    }
    RedisClient admin = RedisClient::connect(proxy.port());
    const Reply r = admin.command({"BGSAVE"});
    CHECK(r.is_error());
    CHECK_MESSAGE(r.str.find("--snapshot-refresh no") != std::string::npos, r.describe());
    sleep_ms(1500);  // a trim tick
    const json s = proxy.status();
    CHECK(json_int(s, "/log/first_offset") == 1);
    CHECK(json_str(s, "/log/retention").find("the disk grows") != std::string::npos);
    CHECK(s["refresh"]["enabled"] == false);
    check_clean_shutdown(proxy);
}
