// A standby in front of the emulated Redis 2.6.17 master (tests/support/legacy_server.h): both
// proxies SYNC it, its stream carries inline `select N` and inline PINGs; the standby's own
// link is placed in the active's stream and spliced in at the takeover. A Redis 7 replica
// moved to the standby continues (+CONTINUE) and ends equal to the master in every db.
#include <doctest/doctest.h>

#include <signal.h>

#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/legacy_load.h"
#include "tests/support/legacy_server.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/test_context.h"

using namespace psync::test;
using nlohmann::json;

TEST_CASE("standby legacy: the active killed under inline-select writes in dbs 0, 3, 5 of a 2.6 master: the standby splices its own SYNC link in, the replica continues, equal to the master") {
    LegacyServerOptions o;
    o.ping_period_seconds = 0.25;  // inline PINGs in every window (2.6 sends them every 10 s at least 1 s)
    o.save_seconds = 0.3;
    Sandbox sandbox;
    LegacyServer master(o);
    fill(master, {0, 3, 5}, 300);
    ProxyProcess active(sandbox, "active", master.port());
    active.start();
    active.wait_snapshot();
    ProxyOptions so;
    so.extra_args = {"--standby-of", "127.0.0.1:" + std::to_string(active.port()), "--standby-timeout", "3"};
    ProxyProcess standby(sandbox, "standby", master.port(), so);
    standby.start();
    RedisServer replica(sandbox, "replica", replica_options(active.port()));
    replica.start();
    active.wait_replica_online(replica.port());
    LegacyLoad load(master, {0, 3, 5});
    load.wait_more_rounds(100);
    const json aligned = standby.wait_status("the own link aligned", 60, [&](const json& s, std::string& st) {
        st = json_at(s, "/standby/alignment").dump() + "\n" + describe(master);
        return json_str(s, "/standby/alignment/state") == "tracking";
    });
    load.wait_more_rounds(100);
    const std::string old_replid = json_str(active.status(), "/proxy/replid");

    ::kill(active.process().pid(), SIGKILL);
    const json b = standby.wait_status("the takeover", 20, [&](const json& s, std::string& st) {
        st = json_str(s, "/standby/state");
        return json_str(s, "/proxy/role") == "active";
    });
    CHECK_MESSAGE(b["standby"]["spliced"] == true, b["standby"].dump());
    CHECK(json_str(b, "/proxy/replid2") == old_replid);
    replica.client().must({"REPLICAOF", "127.0.0.1", std::to_string(standby.port())});
    load.wait_more_rounds(200);
    load.stop();
    CHECK_MESSAGE(load.error().empty(), load.error());
    wait_equal(master, replica, 30);
    CHECK(count_log_lines(replica.log_path(), "Full resync from master", false) == 1);
    CHECK(count_log_lines(replica.log_path(), "Master accepted a Partial Resynchronization", false) >= 1);
    // Two SYNCs on the master: the active's, and the standby's own link.
    CHECK_MESSAGE(master.sync_count() == 2, describe(master));
    check_clean_shutdown(standby);
}
