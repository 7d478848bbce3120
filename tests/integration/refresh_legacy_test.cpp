// The snapshot refresh (proxy/refresher.h) against an emulated Redis 2.6.17 master
// (tests/support/legacy_server.h): its stream carries inline `select N`, a SYNC that arrives
// while a BGSAVE runs gets a copy of another replica's output buffer (an earlier fork, with
// slaveseldb reset to 0 although the copy may end in another db) or waits for the next
// BGSAVE, and PUBLISH may be renamed away. Each refresh ends either with a verified snapshot
// or with none; in every case a Redis 7 replica attached afterwards ends equal to the master
// in every db, and the replicas attached before never full-resync again.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/legacy_load.h"
#include "tests/support/legacy_server.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"

using namespace psync::test;
using nlohmann::json;

namespace {

constexpr const char* kPing = "*1\r\n$4\r\nPING\r\n";

std::string select_len_prefix(int db) {
    const std::string n = std::to_string(db);
    return "*2\r\n$6\r\nSELECT\r\n$" + std::to_string(n.size()) + "\r\n" + n + "\r\n";
}

// Waits until `attempts` refreshes have ended (done or failed) and the refresher is idle.
json wait_refresh_over(const ProxyProcess& proxy, int64_t attempts, double timeout_s = 20) {
    return proxy.wait_status("refresh attempt " + std::to_string(attempts) + " to end", timeout_s,
                             [attempts](const json& s, std::string& state) {
                                 state = json_at(s, "/refresh").dump();
                                 return json_int(s, "/refresh/done") + json_int(s, "/refresh/failed") >= attempts &&
                                        json_str(s, "/refresh/state") == "idle";
                             });
}

void start_refresh(const ProxyProcess& proxy) {
    RedisClient admin = RedisClient::connect(proxy.port());
    const Reply r = admin.command({"BGSAVE"});
    REQUIRE_MESSAGE(r.str == "Background saving started", r.describe());
}

// The snapshot's identity in /status.
struct SnapshotId {
    int64_t offset = 0;
    int64_t fullresync_offset = 0;
    int64_t bytes = 0;
    int64_t created_unix = 0;
    bool operator==(const SnapshotId&) const = default;
    std::string describe() const {
        return "offset " + std::to_string(offset) + ", fullresync_offset " + std::to_string(fullresync_offset) +
               ", " + std::to_string(bytes) + " bytes, created " + std::to_string(created_unix);
    }
};
SnapshotId snapshot_id(const json& s) {
    return {json_int(s, "/snapshot/offset"), json_int(s, "/snapshot/fullresync_offset"), json_int(s, "/snapshot/bytes"),
            json_int(s, "/snapshot/created_unix")};
}

// A legacy master with data in dbs 0, 3 and 5, the proxy replicating it, and one Redis 7
// replica in sync through the proxy.
struct Setup {
    Sandbox sandbox;
    LegacyServer master;
    ProxyProcess proxy;
    std::unique_ptr<RedisServer> r1;  // made once the proxy has its port
    std::string replid;

    explicit Setup(LegacyServerOptions o, ProxyOptions po = {})
        : master(o), proxy(sandbox, "proxy", master.port(), po) {
        fill(master, {0, 3, 5}, 300);
        proxy.start();
        replid = json_str(proxy.wait_snapshot(), "/proxy/replid");
        r1 = std::make_unique<RedisServer>(sandbox, "replica1", replica_options(proxy.port()));
        r1->start();
        proxy.wait_replica_online(r1->port());
        wait_equal(master, *r1);
        REQUIRE_MESSAGE(master.replica(1).how == "forked", describe(master));
    }
};

LegacyServerOptions fast_options() {
    LegacyServerOptions o;
    // PINGs and "\n" keepalives within the windows the refresh compares (2.6 takes at least
    // 1 s for repl-ping-slave-period; the bytes are the same).
    o.ping_period_seconds = 0.25;
    o.save_seconds = 0.3;
    return o;
}

// After any refresh, successful or not: a replica attached now ends equal to the master in
// every db, and the replicas attached before never full-resynced again.
void check_replicas_after(Setup& t, LegacyLoad& load, const std::string& late_name, const json& st) {
    RedisServer late(t.sandbox, late_name, replica_options(t.proxy.port()));
    late.start();
    t.proxy.wait_replica_online(late.port());
    load.wait_more_rounds(100);
    load.stop();
    CHECK_MESSAGE(load.error().empty(), load.error());
    wait_equal(t.master, *t.r1);
    wait_equal(t.master, late);
    CHECK(late.log_count("Full resync from master: " + t.replid + ":" +
                         std::to_string(json_int(st, "/snapshot/fullresync_offset"))) == 1);
    CHECK(t.r1->log_count("Full resync from master") == 1);
    CHECK(t.r1->log_count("Connection with master lost") == 0);
    const json now = t.proxy.status();
    CHECK(json_str(now, "/proxy/replid") == t.replid);
    CHECK(sync_counters(now).upstream_syncs == 1);  // the live link never resynced
}

}  // namespace

TEST_CASE("refresh legacy: the emulated 2.6.17 master: replies, payload framing, inline select, PING, RDB checksum, a copied buffer, refused PUBLISH") {
    CHECK(redis_crc64(0, "123456789") == 0xe9c6d914c4b8d9caULL);  // crc64.c's check value

    LegacyServerOptions o;
    o.ping_period_seconds = 0.4;
    o.save_seconds = 1.0;
    o.requirepass = "pw26";
    LegacyServer m(o);
    m.write_all({{0, {"SET", "a", "hello"}}, {7, {"SET", "300", "70000"}}});

    ScriptedReplica s(m.port());
    s.send("PING\r\n");
    CHECK(s.read_line() == "-ERR operation not permitted");
    s.send("AUTH nope\r\n");
    CHECK(s.read_line() == "-ERR invalid password");
    s.send("*2\r\n$4\r\nAUTH\r\n$4\r\npw26\r\n");
    CHECK(s.read_line() == "+OK");
    s.send("PSYNC ? -1\r\nREPLCONF listening-port 6380\r\nREPLCONF capa psync2\r\nINFO server\r\n");
    CHECK(s.read_line() == "-ERR unknown command 'PSYNC'");
    CHECK(s.read_line() == "+OK");
    CHECK(s.read_line() == "-ERR Unrecognized REPLCONF option: capa");
    const std::string info_len = s.read_line();
    REQUIRE(info_len.starts_with("$"));
    const std::string info = s.read_exact(std::stoul(info_len.substr(1)) + 2);
    CHECK(info.starts_with("# Server\r\nredis_version:2.6.17\r\n"));
    s.send("SYNC\r\n");
    sleep_ms(100);
    // A second replica while the first waits for its BGSAVE: a copy of its buffer.
    m.write_all({{0, {"SET", "b", "1"}}, {3, {"INCR", "b"}}, {3, {"DEL", "nope"}}, {3, {"INCR", "b"}}});
    ScriptedReplica s2(m.port());
    s2.send("AUTH pw26\r\n");
    CHECK(s2.read_line() == "+OK");
    s2.send("SYNC\r\n");
    wait_until("the second SYNC", 5, [&] { return m.sync_count() == 2; });
    m.write_all({{0, {"DEL", "a"}}, {12, {"SET", "c", "x y"}}, {12, {"PUBLISH", "ch", "m"}}});

    const std::string rdb = s.read_payload(10);
    CHECK(s.keepalives() >= 1);  // bare "\n" while the BGSAVE runs
    REQUIRE(rdb.size() > 17);
    CHECK(rdb.starts_with("REDIS0006"));
    uint64_t trailer = 0;
    for (int i = 0; i < 8; ++i) trailer |= static_cast<uint64_t>(static_cast<unsigned char>(rdb[rdb.size() - 8 + i])) << (8 * i);
    CHECK(redis_crc64(0, rdb.substr(0, rdb.size() - 8)) == trailer);
    CHECK(rdb[rdb.size() - 9] == static_cast<char>(0xFF));
    // db 7's integer key and value: 0xC1 (int16) 300, 0xC2 (int32) 70000.
    CHECK(rdb.find(std::string("\xFE\x07\x00\xC1\x2C\x01\xC2\x70\x11\x01\x00", 11)) != std::string::npos);
    CHECK(s2.read_payload(10) == rdb);  // the same BGSAVE's file

    // The stream from the fork: no `select` before the first db-0 write, inline lower-case
    // `select N` at each change, DEL of a missing key not propagated, PUBLISH propagated in
    // its db, and multibulk PINGs once online.
    const std::string expected = multibulk({"SET", "b", "1"}) + "select 3\r\n" + multibulk({"INCR", "b"}) +
                                 multibulk({"INCR", "b"}) + "select 0\r\n" + multibulk({"DEL", "a"}) + "select 12\r\n" +
                                 multibulk({"SET", "c", "x y"}) + multibulk({"PUBLISH", "ch", "m"});
    sleep_ms(1000);
    std::string got = s.read_for(0.1);
    std::string got2 = s2.read_for(0.1);
    int pings = 0;
    for (size_t p; (p = got.find(kPing)) != std::string::npos; ++pings) got.erase(p, std::strlen(kPing));
    for (size_t p; (p = got2.find(kPing)) != std::string::npos;) got2.erase(p, std::strlen(kPing));
    CHECK(got == expected);
    CHECK(pings >= 1);
    // The copy has the first replica's bytes up to the copy, then its own `select` lines from
    // slaveseldb 0: the `DEL a` (db 0) comes without one, although the copy ended in db 3.
    CHECK(got2 == multibulk({"SET", "b", "1"}) + "select 3\r\n" + multibulk({"INCR", "b"}) + multibulk({"INCR", "b"}) +
                      multibulk({"DEL", "a"}) + "select 12\r\n" + multibulk({"SET", "c", "x y"}) +
                      multibulk({"PUBLISH", "ch", "m"}));
    RedisClient admin = RedisClient::connect(m.port());
    admin.must({"AUTH", "pw26"});
    const std::string repl = admin.must({"INFO", "replication"}).str;
    CHECK(repl.starts_with("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"));
    CHECK(repl.find("slave0:127.0.0.1,6380,online\r\n") != std::string::npos);
    CHECK(info_value(admin.must({"INFO", "persistence"}).str, "rdb_bgsave_in_progress") == "0");
    const LegacyReplica r2 = m.replica(2);
    CHECK(r2.how == "copied");
    CHECK(r2.copied_seldb == 3);
    CHECK(r2.misrouted == 1);
    CHECK(m.replica(1).misrouted == 0);
    CHECK(m.log_count("Waiting for end of BGSAVE for SYNC") == 1);

    LegacyServerOptions no_publish;
    no_publish.refuse_publish = true;
    LegacyServer np(no_publish);
    CHECK(np.write(0, {"PUBLISH", "ch", "x"}) == "-ERR unknown command 'PUBLISH'\r\n");
    CHECK(np.write(0, {"publish", "ch", "x"}) == "-ERR unknown command 'publish'\r\n");
    CHECK(m.write(0, {"PUBLISH", "ch", "x"}) == ":0\r\n");
}

TEST_CASE("refresh legacy: inline select in dbs 0 3 5 under load: verified at the fork in db 5, replicas before never full-resync, one after ends equal") {
    LegacyServerOptions o = fast_options();
    o.requirepass = "legacy-pw";
    ProxyOptions po;
    po.masterauth = "legacy-pw";
    Setup t(o, po);
    RedisServer r2(t.sandbox, "replica2", replica_options(t.proxy.port()));
    r2.start();
    t.proxy.wait_replica_online(r2.port());

    // The refresh link's SYNC (the second) forks with db 5 selected on the live stream, and
    // three more db-5 writes follow with no `select` on the live stream: served from X+1 they
    // land in db 5 only if the snapshot's SELECT prefix is right. INCRs: a command applied
    // twice or not at all (X one command off) shows in the data too.
    t.master.set_before_sync([&](int n) {
        if (n == 2) t.master.write(5, {"INCR", "fork:before"});
    });
    t.master.set_after_sync([&](int n) {
        if (n == 2)
            for (int i = 0; i < 3; ++i) t.master.write(5, {"INCR", "fork:after:" + std::to_string(i % 2)});
    });
    LegacyLoad load(t.master, {0, 3, 5});
    load.wait_more_rounds(200);
    const SnapshotId before = snapshot_id(t.proxy.status());
    const auto t0 = Clock::now();
    start_refresh(t.proxy);
    const json s = wait_refresh_over(t.proxy, 1);
    MESSAGE("refresh took " << seconds_since(t0) << " s");
    INFO(describe(t.master));
    REQUIRE_MESSAGE(json_int(s, "/refresh/done") == 1, json_at(s, "/refresh").dump());
    CHECK(json_int(s, "/refresh/failed") == 0);

    const SnapshotId after = snapshot_id(s);
    CHECK(after.offset > before.offset);
    CHECK(json_int(s, "/refresh/alignment/offset") == after.offset);
    CHECK(json_int(s, "/refresh/alignment/db") == 5);
    CHECK(after.fullresync_offset == after.offset - static_cast<int64_t>(select_len_prefix(5).size()));
    // The proxy placed the fork where the master forked: the commands it matched on the new
    // link are exactly those the master put in that link's stream up to its first PUBLISH.
    const LegacyReplica fresh = t.master.replica(2);
    CHECK(fresh.how == "forked");
    CHECK(fresh.misrouted == 0);
    REQUIRE(fresh.commands_through_first_publish.has_value());
    CHECK(json_int(s, "/refresh/alignment/matched_commands") == static_cast<int64_t>(*fresh.commands_through_first_publish));
    CHECK(*fresh.commands_through_first_publish >= 4);  // the 3 db-5 writes and the marker
    // Both links did carry inline selects, and the live one PINGs.
    CHECK(t.master.replica(1).selects > 10);
    CHECK(fresh.selects >= 1);
    CHECK(t.master.replica(1).pings >= 1);
    CHECK(t.master.sync_count() == 2);
    wait_until("the proxy to close its second link", 5, [&] { return t.master.replica(2).state == "closed"; });

    check_replicas_after(t, load, "late", s);
    wait_equal(t.master, r2);
    CHECK(r2.log_count("Full resync from master") == 1);
    check_clean_shutdown(t.proxy);
}

TEST_CASE("refresh legacy: another replica waits for its BGSAVE since before marker 0: the copy of its buffer is refused, the snapshot stays") {
    LegacyServerOptions o = fast_options();
    Setup t(o);
    LegacyLoad load(t.master, {0, 3, 5});
    load.wait_more_rounds(100);
    // A 2.6 replica (a plain socket) SYNCs; its BGSAVE runs 3 s.
    t.master.set_save_seconds(3);
    ScriptedReplica other(t.master.port());
    other.send("SYNC\r\n");
    wait_until("the other replica waiting for its BGSAVE", 5, [&] {
        return t.master.sync_count() == 2 && t.master.replica(2).state == "wait_bgsave_end";
    });
    const SnapshotId before = snapshot_id(t.proxy.status());
    start_refresh(t.proxy);
    const json s = wait_refresh_over(t.proxy, 1);
    INFO(describe(t.master));
    CHECK(json_int(s, "/refresh/done") == 0);
    CHECK(json_int(s, "/refresh/failed") == 1);
    CHECK_MESSAGE(json_str(s, "/refresh/last_error").find("before marker 0") != std::string::npos, json_str(s, "/refresh/last_error"));
    CHECK(json_at(s, "/refresh/alignment").is_null());
    CHECK(snapshot_id(s) == before);
    const LegacyReplica fresh = t.master.replica(3);
    CHECK(fresh.how == "copied");
    CHECK(fresh.copied_from == 2);
    CHECK(t.master.log_count("Waiting for end of BGSAVE for SYNC") == 1);
    CHECK(t.master.sync_count() == 3);
    // The other replica got the BGSAVE's RDB as 2.6 frames it.
    const std::string rdb = other.read_payload(10);
    CHECK(rdb.starts_with("REDIS0006"));
    CHECK(other.keepalives() >= 1);

    check_replicas_after(t, load, "late", s);
    check_clean_shutdown(t.proxy);
}

TEST_CASE("refresh legacy: another replica forked after marker 0 and its buffer ends in db 3: 2.6 gives the copy slaveseldb 0, the proxy refuses it") {
    LegacyServerOptions o = fast_options();
    Setup t(o);
    // Right before the refresh link's SYNC (the second): another replica SYNCs (the third, a
    // fork, BGSAVE running 1 s) and a db-3 write reaches its buffer. The refresh link then
    // gets a copy ending in db 3 with slaveseldb 0, and the db-0 write right after it comes
    // with no `select`: its bytes say db 3.
    t.master.set_save_seconds(1);
    t.master.set_before_sync([&](int n) {
        if (n != 2) return;
        t.master.attach_replica();
        t.master.write(3, {"SET", "copy:tail", "3"});
    });
    t.master.set_after_sync([&](int n) {
        if (n == 2) t.master.write(0, {"SET", "after:copy", "0"});
    });
    LegacyLoad load(t.master, {0, 3, 5});
    load.wait_more_rounds(100);
    const SnapshotId before = snapshot_id(t.proxy.status());
    start_refresh(t.proxy);
    const json s = wait_refresh_over(t.proxy, 1);
    INFO(describe(t.master));
    const LegacyReplica fresh = t.master.replica(2);
    REQUIRE(fresh.how == "copied");
    CHECK(fresh.copied_from == 3);
    CHECK(fresh.copied_seldb == 3);
    // The hazard did happen before the new link's first marker ...
    REQUIRE(fresh.misrouted_through_first_publish.has_value());
    CHECK(*fresh.misrouted_through_first_publish >= 1);
    // ... and the proxy saw it: no snapshot from that link.
    CHECK(json_int(s, "/refresh/done") == 0);
    CHECK(json_int(s, "/refresh/failed") == 1);
    CHECK_MESSAGE(json_str(s, "/refresh/last_error").find("assumed db is wrong") != std::string::npos,
                  json_str(s, "/refresh/last_error"));
    CHECK(snapshot_id(s) == before);
    CHECK(t.master.sync_count() == 3);

    check_replicas_after(t, load, "late", s);
    check_clean_shutdown(t.proxy);
}

TEST_CASE("refresh legacy: another replica forked after marker 0 and its buffer ends in db 0: the copy is verified at that replica's earlier fork") {
    LegacyServerOptions o = fast_options();
    Setup t(o);
    // As above, but the copied buffer ends in db 0, which 2.6 assumes: the copy is a true
    // stream from the other replica's fork. That fork is in db 5 (the write just before it),
    // and the first write after it is in db 5 too: no `select` on the live stream there, so
    // the late replica gets it in the right db only through the snapshot's SELECT prefix.
    t.master.set_save_seconds(1);
    t.master.set_before_sync([&](int n) {
        if (n != 2) return;
        t.master.write(5, {"INCR", "fork:db5"});
        t.master.attach_replica();
        t.master.write_all({{5, {"INCR", "copy:c"}}, {3, {"SET", "copy:a", "3"}}, {0, {"INCR", "copy:b"}},
                            {5, {"INCR", "copy:c"}}, {0, {"SET", "copy:d", "0"}}});
    });
    LegacyLoad load(t.master, {0, 3, 5});
    load.wait_more_rounds(100);
    const SnapshotId before = snapshot_id(t.proxy.status());
    start_refresh(t.proxy);
    const json s = wait_refresh_over(t.proxy, 1);
    INFO(describe(t.master));
    const LegacyReplica fresh = t.master.replica(2);
    REQUIRE(fresh.how == "copied");
    CHECK(fresh.copied_from == 3);
    CHECK(fresh.copied_seldb == 0);
    CHECK(fresh.misrouted == 0);
    REQUIRE_MESSAGE(json_int(s, "/refresh/done") == 1, json_at(s, "/refresh").dump());
    CHECK(json_int(s, "/refresh/failed") == 0);
    CHECK(snapshot_id(s).offset > before.offset);
    // X is the other replica's fork: the copy's 5 commands were matched too, and db 5 was in
    // effect there.
    REQUIRE(fresh.commands_through_first_publish.has_value());
    CHECK(json_int(s, "/refresh/alignment/matched_commands") == static_cast<int64_t>(*fresh.commands_through_first_publish));
    CHECK(*fresh.commands_through_first_publish >= 6);
    CHECK(json_int(s, "/refresh/alignment/db") == 5);
    CHECK(json_int(s, "/snapshot/fullresync_offset") == json_int(s, "/snapshot/offset") - static_cast<int64_t>(select_len_prefix(5).size()));

    check_replicas_after(t, load, "late", s);
    check_clean_shutdown(t.proxy);
}

TEST_CASE("refresh legacy: a client's BGSAVE is running: the SYNC waits for the next BGSAVE and is verified at that fork") {
    LegacyServerOptions o = fast_options();
    Setup t(o);
    LegacyLoad load(t.master, {0, 3, 5});
    load.wait_more_rounds(100);
    REQUIRE(t.master.bgsave(2.0) == "+Background saving started\r\n");
    const SnapshotId before = snapshot_id(t.proxy.status());
    start_refresh(t.proxy);
    const json s = wait_refresh_over(t.proxy, 1);
    INFO(describe(t.master));
    const LegacyReplica fresh = t.master.replica(2);
    CHECK(fresh.how == "waited");
    CHECK(t.master.log_count("Waiting for next BGSAVE for SYNC") == 1);
    CHECK(fresh.newlines >= 1);  // "\n" while it waited
    CHECK(fresh.misrouted == 0);
    REQUIRE_MESSAGE(json_int(s, "/refresh/done") == 1, json_at(s, "/refresh").dump());
    CHECK(snapshot_id(s).offset > before.offset);
    REQUIRE(fresh.commands_through_first_publish.has_value());
    CHECK(json_int(s, "/refresh/alignment/matched_commands") == static_cast<int64_t>(*fresh.commands_through_first_publish));
    // Markers went on while the SYNC waited (every 100 ms, the wait was about 2 s): the fork
    // is placed well after marker 0.
    CHECK(json_int(s, "/refresh/alignment/marker") >= 5);

    check_replicas_after(t, load, "late", s);
    check_clean_shutdown(t.proxy);
}

TEST_CASE("refresh legacy: a master that refuses PUBLISH: BGSAVE fails naming PUBLISH, no second SYNC, the snapshot stays, replicas still served") {
    LegacyServerOptions o = fast_options();
    o.refuse_publish = true;
    Setup t(o);
    LegacyLoad load(t.master, {0, 3, 5});
    load.wait_more_rounds(100);
    const SnapshotId before = snapshot_id(t.proxy.status());
    start_refresh(t.proxy);
    const json s = wait_refresh_over(t.proxy, 1);
    INFO(describe(t.master));
    CHECK(json_int(s, "/refresh/done") == 0);
    CHECK(json_int(s, "/refresh/failed") == 1);
    CHECK_MESSAGE(json_str(s, "/refresh/last_error").find("PUBLISH") != std::string::npos, json_str(s, "/refresh/last_error"));
    CHECK(snapshot_id(s) == before);
    sleep_ms(500);
    CHECK(t.master.sync_count() == 1);
    CHECK(t.master.log_count("Slave ask for synchronization") == 1);

    check_replicas_after(t, load, "late", s);
    check_clean_shutdown(t.proxy);
}
