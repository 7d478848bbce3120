// psync-proxy between a SYNC-only Redis master and Redis 7 replicas: convergence, partial
// resyncs after link loss and restarts, full resyncs served from the proxy's snapshot, and a
// new lineage after the master restarts.
#include <doctest/doctest.h>

#include <filesystem>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

int64_t master_sync_full(const RedisServer& master) { return master.info_int("stats", "sync_full"); }

// Waits until the proxy counted `partial_ok` partial resyncs and lists `replica` as online.
json wait_partial_resync(const ProxyProcess& proxy, const RedisServer& replica, int64_t partial_ok) {
    return proxy.wait_status(replica.name() + " back online after a partial resync (sync_partial_ok " +
                                 std::to_string(partial_ok) + ")",
                             30, [&](const json& s, std::string& state) {
                                 state = sync_counters(s).describe() + ", replica entry: " +
                                         find_replica(s, replica.port()).dump();
                                 return json_int(s, "/counters/sync_partial_ok") >= partial_ok &&
                                        replica_field(s, replica.port(), "state") == "online";
                             });
}

void check_replica_link(const RedisServer& replica, const ProxyProcess& proxy, const std::string& replid) {
    const std::string info = replica.info("replication");
    CHECK_MESSAGE(info_value(info, "master_link_status") == "up", replica.name() << ":\n" << info);
    CHECK(info_value(info, "master_port") == std::to_string(proxy.port()));
    CHECK_MESSAGE(info_value(info, "master_replid") == replid, replica.name() << " follows another replid:\n" << info);
}

}  // namespace

TEST_CASE("proxy: two Redis 7 replicas of a SYNC-only master converge in dbs 0 1 and 5") {
    ProxiedCluster c;
    c.start(2, 120);  // master with data in dbs 0, 1, 5; proxy; 2 replicas online and equal

    CHECK(c.master.keyspace().size() > 300);
    json s = c.proxy->status();
    const std::string replid = json_str(s, "/proxy/replid");
    CHECK_MESSAGE(is_replid(replid), "proxy replid is not 40 hex chars: '" << replid << "'");
    CHECK(json_str(s, "/snapshot/replid") == replid);
    CHECK(json_int(s, "/counters/sync_full") == 2);
    CHECK(json_int(s, "/counters/sync_partial_ok") == 0);
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(json_at(s, "/upstream/link_up") == true);
    CHECK(json_str(s, "/upstream/state") == "streaming");
    CHECK(json_str(s, "/upstream/address") == "127.0.0.1:" + std::to_string(c.master.port()));
    CHECK(json_at(s, "/replicas").size() == 2);
    for (auto& r : c.replicas) {
        CHECK_MESSAGE(replica_field(s, r->port(), "state") == "online", r->name() << ": " << s.dump());
        CHECK(replica_field(s, r->port(), "sync") == "full");
        check_replica_link(*r, *c.proxy, replid);
    }
    // The master served one SYNC (the proxy's), not one per replica.
    CHECK(master_sync_full(c.master) == 1);

    CHECK(http_get(c.proxy->status_port(), "/healthz").status == 200);
    HttpResponse missing = http_get(c.proxy->status_port(), "/no-such-page");
    CHECK(missing.status == 404);
    CHECK_MESSAGE(json::accept(missing.body), "404 body is not JSON: " << missing.body);

    // Further writes of every kind, in all three dbs, reach both replicas.
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    write_burst(m, ProxiedCluster::kDbs, 2);
    c.wait_replicas_equal();

    // Offsets: each replica applied and acknowledged exactly the proxy's master_repl_offset.
    c.proxy->wait_status("both replicas to ack the proxy's master_repl_offset", 30, [&](const json& st, std::string& state) {
        const int64_t offset = json_int(st, "/proxy/offset");
        state = "proxy offset " + std::to_string(offset);
        bool all = true;
        for (auto& r : c.replicas) {
            json entry = find_replica(st, r->port());
            const int64_t acked = entry.is_object() ? json_int(entry, "/acked_offset") : -1;
            const int64_t applied = r->info_int("replication", "master_repl_offset");
            state += "; " + r->name() + " acked " + std::to_string(acked) + " applied " + std::to_string(applied);
            all = all && acked == offset && applied == offset;
        }
        return all;
    });
    CHECK(sync_counters(c.proxy->status()).sync_full == 2);
    CHECK(master_sync_full(c.master) == 1);

    check_clean_shutdown(*c.proxy);
}

TEST_CASE("proxy: a replica whose master link is killed under writes resumes with a partial resync") {
    ProxiedCluster c;
    c.start(2);
    RedisServer& replica = *c.replicas[0];
    const SyncCounters before = sync_counters(c.proxy->status());
    const int64_t master_full_before = master_sync_full(c.master);
    const std::string replid = replica.info_field("replication", "master_replid");

    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(50);
    const int64_t offset_before = json_int(c.proxy->status(), "/proxy/offset");
    // Kill the link, then keep the replica busy for 0.5 s (a Redis 7 replica reconnects at
    // once): writes pile up while it is away, so the partial resync has bytes to catch up on.
    std::vector<Reply> replies =
        replica.client().pipeline({{"CLIENT", "KILL", "TYPE", "master"}, {"DEBUG", "SLEEP", "0.5"}});
    REQUIRE_MESSAGE(replies[0].integer == 1, "CLIENT KILL TYPE master -> " << replies[0].describe());
    REQUIRE_MESSAGE(!replies[1].is_error(), "DEBUG SLEEP -> " << replies[1].describe());
    CHECK_MESSAGE(json_int(c.proxy->status(), "/proxy/offset") > offset_before,
                  "no writes reached the proxy while the replica was away");
    json s = wait_partial_resync(*c.proxy, replica, before.sync_partial_ok + 1);
    writer.wait_more_rounds(50);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());

    c.wait_replicas_equal();
    s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    CHECK_MESSAGE(after.sync_partial_ok == before.sync_partial_ok + 1, before.describe() << " -> " << after.describe());
    CHECK_MESSAGE(after.sync_full == before.sync_full, before.describe() << " -> " << after.describe());
    CHECK(after.upstream_syncs == before.upstream_syncs);
    CHECK(replica_field(s, replica.port(), "sync") == "partial");
    CHECK(master_sync_full(c.master) == master_full_before);
    check_replica_link(replica, *c.proxy, replid);
    // The replica's own account: one full sync at the start, then one partial resync.
    CHECK(replica.log_count("Full resync from master") == 1);
    CHECK(replica.log_count("Successful partial resynchronization with master") == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("proxy: a replica restarted with SHUTDOWN SAVE comes back with a partial resync") {
    ProxiedCluster c;
    c.start(2);
    RedisServer& replica = *c.replicas[0];
    const SyncCounters before = sync_counters(c.proxy->status());
    const int64_t master_full_before = master_sync_full(c.master);
    const std::string replid = replica.info_field("replication", "master_replid");

    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(50);
    replica.shutdown_save();
    // SHUTDOWN SAVE writes the RDB (with the replication id and offset) even with save "".
    REQUIRE(std::filesystem::exists(replica.dir() + "/dump.rdb"));
    writer.wait_more_rounds(100);  // the master moves on while the replica is down
    replica.start();               // same port, same dir: loads dump.rdb, sends PSYNC <replid> <offset+1>
    wait_partial_resync(*c.proxy, replica, before.sync_partial_ok + 1);
    writer.wait_more_rounds(50);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());

    c.wait_replicas_equal();
    json s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    CHECK_MESSAGE(after.sync_partial_ok == before.sync_partial_ok + 1, before.describe() << " -> " << after.describe());
    CHECK_MESSAGE(after.sync_full == before.sync_full, before.describe() << " -> " << after.describe());
    CHECK(replica_field(s, replica.port(), "sync") == "partial");
    CHECK(master_sync_full(c.master) == master_full_before);
    check_replica_link(replica, *c.proxy, replid);
    // The replica's own account: one full sync at the start, then one partial resync.
    CHECK(replica.log_count("Full resync from master") == 1);
    CHECK(replica.log_count("Successful partial resynchronization with master") == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("proxy: a replica joining later gets a full resync from the proxy's snapshot and not from the master") {
    ProxiedCluster c;
    c.start(2);
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);  // data after the snapshot: the newcomer needs snapshot + log
    c.wait_replicas_equal();
    json s = c.proxy->status();
    const SyncCounters before = sync_counters(s);
    const int64_t snapshot_offset = json_int(s, "/snapshot/offset");
    const int64_t master_full_before = master_sync_full(c.master);

    RedisServer& late = c.add_replica("replica3");
    c.proxy->wait_replica_online(late.port());
    write_burst(m, ProxiedCluster::kDbs, 2);
    c.wait_replicas_equal();

    s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    CHECK_MESSAGE(after.sync_full == before.sync_full + 1, before.describe() << " -> " << after.describe());
    CHECK(after.upstream_syncs == before.upstream_syncs);
    CHECK(json_int(s, "/snapshot/offset") == snapshot_offset);
    CHECK(replica_field(s, late.port(), "sync") == "full");
    CHECK(json_at(s, "/replicas").size() == 3);
    CHECK_MESSAGE(master_sync_full(c.master) == master_full_before, "the master served a SYNC for the new replica");
    check_replica_link(late, *c.proxy, json_str(s, "/proxy/replid"));
    CHECK(late.log_count("Full resync from master: " + json_str(s, "/proxy/replid") + ":" +
                         std::to_string(snapshot_offset)) == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("proxy: after the master restarts the proxy re-syncs and moves its replicas to a new lineage") {
    ProxiedCluster c;
    c.start(2);
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.wait_replicas_equal();
    json s = c.proxy->status();
    const SyncCounters before = sync_counters(s);
    const std::string old_replid = json_str(s, "/proxy/replid");
    const int64_t old_offset = json_int(s, "/proxy/offset");

    const Keyspace saved = c.master.keyspace();
    c.master.shutdown_save();
    c.master.start();  // same port and dir: loads dump.rdb
    REQUIRE_MESSAGE(diff_keyspaces(saved, c.master.keyspace(), "before restart", "after restart").empty(),
                    "the master did not reload its data");
    {
        RedisClient m2 = c.master.client();
        write_burst(m2, ProxiedCluster::kDbs, 2);  // lands in the new RDB or the new stream
    }

    s = c.proxy->wait_status("a new snapshot from the restarted master, with a new replid", 60,
                             [&](const json& st, std::string& state) {
                                 state = sync_counters(st).describe();
                                 const std::string replid = json_str(st, "/proxy/replid");
                                 return json_int(st, "/upstream/sync_count") > before.upstream_syncs &&
                                        is_replid(replid) && replid != old_replid && st.at("snapshot").is_object() &&
                                        json_str(st, "/snapshot/replid") == replid &&
                                        json_str(st, "/upstream/state") == "streaming";
                             });
    const std::string new_replid = json_str(s, "/proxy/replid");
    CHECK_MESSAGE(json_int(s, "/snapshot/offset") >= old_offset,
                  "offsets went backwards across lineages: " << old_offset << " -> " << json_int(s, "/snapshot/offset"));

    for (auto& r : c.replicas) {
        wait_until(r->name() + " to follow the new lineage " + new_replid, 60, [&](std::string& state) {
            const std::string info = r->info("replication");
            state = "master_replid " + info_value(info, "master_replid") + ", link " +
                    info_value(info, "master_link_status");
            return info_value(info, "master_replid") == new_replid && info_value(info, "master_link_status") == "up";
        });
    }
    c.wait_replicas_equal();
    {
        RedisClient m3 = c.master.client();
        write_burst(m3, ProxiedCluster::kDbs, 3);
    }
    c.wait_replicas_equal();

    s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    CHECK_MESSAGE(after.sync_full >= before.sync_full + 2, before.describe() << " -> " << after.describe());
    for (auto& r : c.replicas) {
        CHECK_MESSAGE(replica_field(s, r->port(), "state") == "online", r->name() << ": " << s.dump());
        check_replica_link(*r, *c.proxy, new_replid);
        CHECK(r->log_count("Full resync from master: " + new_replid) == 1);
    }
    // The restarted master served exactly one SYNC: the proxy's. The replicas never reached it.
    CHECK(master_sync_full(c.master) == 1);
    check_clean_shutdown(*c.proxy);
}
