// psync-proxy in front of a scripted master speaking the Redis 2.4/2.6 dialect byte for byte:
// `\n` keepalives, `$len` + RDB without trailing CRLF, inline lower-case `select N`, multibulk
// and inline PINGs. Redis 7 replicas behind the proxy must end equal to a real server that got
// the same writes.
#include <doctest/doctest.h>

#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

TEST_CASE("proxy: Redis 7 replicas of a scripted 2.6 master (inline select and inline PING) end equal") {
    Sandbox sandbox;
    // The "source" is a real server holding what the legacy master holds: it provides the RDB,
    // gets every write the legacy stream carries, and is the reference for the replicas.
    RedisServer source(sandbox, "source");
    source.start();
    RedisClient src = source.client();
    for (int db : {0, 2, 3}) fill_dataset(src, db, 60);
    const std::string rdb = dump_rdb(source, sandbox.subdir("rdb") + "/source.rdb");

    ScriptedMaster legacy;
    ProxyProcess proxy(sandbox, "proxy", legacy.port());
    proxy.start();
    legacy.accept_client();
    const std::vector<Command> handshake = legacy.serve_until_sync();

    // The proxy's handshake (--upstream-mode auto): REPLCONF listening-port <port>, at most
    // "capa psync2" (which 2.6 refuses harmlessly), a PSYNC that 2.6 answers with -ERR, then SYNC
    // on the same link. Never "capa eof" (it would turn the payload into the $EOF form) and never
    // an ACK (2.6 would queue its error reply into the stream).
    bool announced_port = false;
    size_t psyncs = 0;
    for (const auto& cmd : handshake) {
        const std::string name = upper(cmd[0]);
        if (name == "PSYNC") {
            ++psyncs;
            CHECK(cmd.size() == 3);
            CHECK(cmd[1] == "?");
            CHECK(cmd[2] == "-1");
        }
        if (name == "REPLCONF") {
            REQUIRE(cmd.size() >= 3);
            const std::string opt = upper(cmd[1]);
            CHECK_MESSAGE((opt == "LISTENING-PORT" || (opt == "CAPA" && upper(cmd[2]) == "PSYNC2")),
                          "unexpected upstream REPLCONF " << cmd[1] << " " << cmd[2]);
            if (opt == "LISTENING-PORT") announced_port |= cmd[2] == std::to_string(proxy.port());
        }
    }
    CHECK(announced_port);
    CHECK(psyncs <= 1);
    CHECK(upper(handshake.back()[0]) == "SYNC");

    // Before its first snapshot the proxy has no lineage and turns replicas away with
    // -NOMASTERLINK (a Redis 4.0+ replica retries shortly).
    json before = proxy.wait_status("the upstream waiting for the payload", 10, [](const json& st, std::string&) {
        return json_str(st, "/upstream/state") == "waiting_payload";
    });
    CHECK(json_str(before, "/proxy/replid") == "");
    CHECK(json_at(before, "/snapshot").is_null());
    CHECK(json_int(before, "/upstream/sync_count") == 0);
    CHECK(json_str(before, "/upstream/version") == "2.6.17");
    CHECK(http_get(proxy.status_port(), "/healthz").status == 503);  // not ready: no snapshot yet
    {
        Reply psync = RedisClient::connect(proxy.port()).command({"PSYNC", "?", "-1"});
        CHECK_MESSAGE((psync.is_error() && psync.str.rfind("NOMASTERLINK", 0) == 0),
                      "PSYNC before the first snapshot -> " << psync.describe());
    }

    LegacyStream stream;
    // Part 1, glued to the RDB in the same write: db 0 writes with no SELECT before them.
    stream.command({"SET", "legacy:a", "v0"});
    stream.command({"INCR", "k:0:counter"});
    stream.command({"RPUSH", "k:0:list:2", "tail"});
    stream.command({"HSET", "k:0:hash:1", "f1", "from-stream"});
    legacy.send_payload(rdb, 2, stream.take_bytes());
    apply_writes(src, stream.take_writes());
    proxy.wait_snapshot();

    // Part 2, before any replica: db changes with inline `select`, PINGs of both dialects, a
    // bare newline, a MULTI/EXEC block, EVAL (2.6 propagates EVALSHA as EVAL), a large value.
    stream.select(2);
    stream.command({"SET", "legacy:b", "in db 2"});
    stream.command({"SADD", "k:2:set:3", "added"});
    stream.command({"ZADD", "k:2:zset:4", "7", "seven"});
    stream.command({"EXPIRE", "k:2:str:0", "1000"});
    stream.ping_multibulk();
    stream.select(3);
    stream.command({"SET", "legacy:c", "in db 3"});
    stream.command({"DEL", "k:3:str:7"});
    stream.command({"LPUSH", "k:3:list:2", "head"});
    stream.ping_inline();
    stream.newline();
    stream.select(0);
    stream.command({"MULTI"});
    stream.command({"SET", "legacy:tx", "1"});
    stream.command({"INCRBY", "k:0:counter", "10"});
    stream.command({"EXEC"});
    stream.command({"EVAL", "redis.call('set', KEYS[1], ARGV[1]) return 1", "1", "legacy:eval", "from-script"});
    stream.command({"SET", "legacy:big", std::string(200000, 'b') + "end"});
    legacy.send(stream.take_bytes());
    apply_writes(src, stream.take_writes());

    RedisServer replica1(sandbox, "replica1", replica_options(proxy.port()));
    RedisServer replica2(sandbox, "replica2", replica_options(proxy.port()));
    replica1.start();
    replica2.start();
    proxy.wait_replica_online(replica1.port());
    proxy.wait_replica_online(replica2.port());
    wait_keyspace_equal(source, replica1);
    wait_keyspace_equal(source, replica2);

    // Part 3, with the replicas online, sent in 7-byte pieces: commands and inline lines split
    // across reads.
    for (int round = 0; round < 3; ++round) {
        const std::string r = std::to_string(round);
        stream.select(3);
        stream.command({"SET", "legacy:c:" + r, "db3-" + r});
        stream.command({"HSET", "k:3:hash:1", "f" + r, r});
        stream.ping_inline();
        stream.select(2);
        stream.command({"INCR", "legacy:counter2"});
        stream.newline();
        stream.select(0);
        stream.command({"SET", "legacy:a:" + r, "db0-" + r});
        stream.ping_multibulk();
        stream.select(5);  // a db absent from the RDB
        stream.command({"RPUSH", "legacy:db5", r});
    }
    stream.select(0);
    stream.command({"SET", "legacy:last", "done"});
    legacy.send_chunked(stream.take_bytes(), 7, 1);
    apply_writes(src, stream.take_writes());

    wait_keyspace_equal(source, replica1);
    wait_keyspace_equal(source, replica2);
    const Keyspace ks = replica1.keyspace();
    CHECK(ks.count({2, "legacy:b"}) == 1);
    CHECK(ks.count({3, "legacy:c:2"}) == 1);
    CHECK(ks.count({5, "legacy:db5"}) == 1);
    CHECK(ks.count({0, "legacy:last"}) == 1);

    // The proxy sends nothing upstream after SYNC (a 2.6 master would queue errors for ACKs
    // into the stream).
    const std::string upstream_bytes = legacy.received_bytes(0.3);
    CHECK_MESSAGE(upstream_bytes.empty(), "the proxy sent bytes upstream after SYNC: " << upstream_bytes.substr(0, 200));

    json s = proxy.status();
    CHECK(json_str(s, "/upstream/state") == "streaming");
    CHECK(json_at(s, "/upstream/link_up") == true);
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(json_str(s, "/upstream/mode") == "sync");  // PSYNC was refused: the link cannot be resumed
    CHECK(json_int(s, "/upstream/rdb_bytes_received") == static_cast<int64_t>(rdb.size()));
    CHECK(json_int(s, "/upstream/rdb_bytes_expected") == static_cast<int64_t>(rdb.size()));
    CHECK(json_int(s, "/upstream/commands") > 0);
    CHECK(json_int(s, "/upstream/stream_bytes") > 0);
    CHECK(json_int(s, "/counters/sync_full") == 2);
    CHECK(replica1.info_field("replication", "master_link_status") == "up");
    CHECK(replica2.info_field("replication", "master_link_status") == "up");
    check_clean_shutdown(proxy);
}
