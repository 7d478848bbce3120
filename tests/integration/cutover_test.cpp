// The cut-over off the legacy master, as the README's "Moving off the legacy master" says:
// writes stopped, WAIT on the proxy, REPLICAOF NO ONE on the replica that becomes the master,
// REPLICAOF it on the others: partial resyncs only, the same data everywhere, and the proxy
// retired.
#include <doctest/doctest.h>

#include "tests/support/cluster.h"
#include "tests/support/keyspace.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

TEST_CASE("cutover: writes stopped then WAIT then REPLICAOF NO ONE and REPLICAOF: the other replica resyncs partially and every db is equal") {
    ProxiedCluster c;
    c.start(2, 100);
    RedisServer& promoted = *c.replicas[0];
    RedisServer& other = *c.replicas[1];
    const std::string proxy_replid = json_str(c.proxy->status(), "/proxy/replid");

    // The application writes for a while, in several dbs, then stops (step 1).
    {
        BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
        writer.wait_more_rounds(200);
        writer.stop();
        CHECK_MESSAGE(writer.error().empty(), writer.error());
    }
    // Step 2: a last write on the legacy master, seen on the replicas: the proxy has
    // everything the master wrote (its offsets are its own, not comparable to the master's).
    RedisClient m = c.master.client();
    m.must({"SET", "psync-proxy:cutover", "marker-1"});
    for (auto& r : c.replicas) {
        wait_until(r->name() + " to have the cut-over marker", 30,
                   [&] { return r->client().command({"GET", "psync-proxy:cutover"}).str == "marker-1"; });
    }

    // The proxy puts its own PING in the stream every 10 s: one that reached the other replica
    // after the promotion would put it ahead of the new master (a full resync). The README's
    // script runs steps 4 and 5 back to back; here they are timed right after a PING.
    const int64_t idle_offset = json_int(c.proxy->status(), "/proxy/offset");
    c.proxy->wait_status("the proxy's next own PING", 15, [&](const json& s, std::string&) {
        return json_int(s, "/proxy/offset") > idle_offset;
    });

    // Step 3: WAIT on the proxy: both replicas acknowledged its whole stream.
    const int64_t end = json_int(c.proxy->status(), "/proxy/offset");
    const auto start = Clock::now();
    Reply waited = RedisClient::connect(c.proxy->port()).command({"WAIT", "2", "10000"});
    CHECK_MESSAGE(waited.integer == 2, waited.describe());
    CHECK(seconds_since(start) < 5);
    for (auto& r : c.replicas) CHECK(r->info_int("replication", "master_repl_offset") >= end);
    CHECK(promoted.info_int("replication", "master_repl_offset") == other.info_int("replication", "master_repl_offset"));

    // Steps 4 and 5.
    CHECK(promoted.client().must({"REPLICAOF", "NO", "ONE"}).str == "OK");
    CHECK(other.client().must({"REPLICAOF", "127.0.0.1", std::to_string(promoted.port())}).str == "OK");
    wait_until("the other replica to follow the new master", 30, [&](std::string& state) {
        const std::string info = other.info("replication");
        state = "master_port " + info_value(info, "master_port") + ", link " + info_value(info, "master_link_status");
        return info_value(info, "master_port") == std::to_string(promoted.port()) &&
               info_value(info, "master_link_status") == "up";
    });

    // The new master accepted the other's PSYNC as a partial resync: the proxy's replid is its
    // replid2, and no full resync happened anywhere.
    CHECK(promoted.info_int("stats", "sync_partial_ok") == 1);
    CHECK(promoted.info_int("stats", "sync_full") == 0);
    CHECK(promoted.info_int("stats", "sync_partial_err") == 0);
    CHECK(promoted.info_field("replication", "master_replid2") == proxy_replid);
    CHECK(other.log_count("Successful partial resynchronization with master") == 1);
    CHECK(other.log_count("Full resync from master") == 1);  // the first one, from the proxy's snapshot

    // The same data in every db, on the legacy master and both replicas.
    const Keyspace legacy = c.master.keyspace();
    CHECK(legacy.size() > 300);
    CHECK(diff_keyspaces(legacy, promoted.keyspace(), "legacy master", promoted.name()).empty());
    CHECK(diff_keyspaces(legacy, other.keyspace(), "legacy master", other.name()).empty());

    // The application moves to the new master; its writes reach the other replica.
    RedisClient nm = promoted.client();
    nm.must({"DEL", "psync-proxy:cutover"});
    write_burst(nm, ProxiedCluster::kDbs, 7);
    wait_keyspace_equal(promoted, other, 30);
    CHECK(other.keyspace().count({0, "psync-proxy:cutover"}) == 0);

    // Step 6: the proxy is retired; the legacy master served one SYNC in all (the proxy's).
    CHECK(c.master.info_int("stats", "sync_full") == 1);
    check_clean_shutdown(*c.proxy);
    write_burst(nm, ProxiedCluster::kDbs, 8);
    wait_keyspace_equal(promoted, other, 30);
    CHECK(other.info_field("replication", "master_link_status") == "up");
}
