// Compatibility with every replica generation (issue 3, downstream side). Each generation's
// handshake is sent byte for byte by a scripted replica (4.0+ PSYNC2, 2.8-3.2 PSYNC1, 2.6 SYNC)
// that checks every byte it gets back: reply lines, the RDB (equal to the proxy's snapshot
// file), the stream (strict RESP multibulk, carrying exactly the writes made on the master) and
// its offsets. Real Redis 7 replicas cover AUTH / masteruser, and redis-cli covers --replica
// and --rdb. INFO and ROLE are compared field by field with a real Redis 7 master's.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "tests/support/cluster.h"
#include "tests/support/compat.h"
#include "tests/support/keyspace.h"
#include "tests/support/process.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// Writes of several types over dbs 0, 3 and 5, each one changing the data (so that the master
// propagates every one of them).
void some_writes(RecordingWriter& w, const std::string& tag) {
    const std::string p = "compat:" + tag + ":";
    w.write(0, {"SET", p + "s", "v-" + tag});
    w.write(0, {"INCR", p + "n"});
    w.write(3, {"RPUSH", p + "l", "a", "b c"});
    w.write(3, {"HSET", p + "h", "f", "x\r\ny"});
    w.write(0, {"SADD", p + "set", "m1", "m2"});
    w.write(5, {"SET", p + "bin", std::string("\0\xff\r\n", 4)});
    w.write(0, {"ZADD", p + "z", "1.5", "one"});
}

// The reply to `cmd` starts with `prefix` (an error code such as NOAUTH or WRONGPASS).
void check_reply_prefix(RedisClient& client, const Command& cmd, const std::string& prefix) {
    const Reply r = client.command(cmd);
    std::string sent;
    for (const auto& a : cmd) sent += a + " ";
    CHECK_MESSAGE(r.str.rfind(prefix, 0) == 0, sent << "-> " << r.describe() << ", expected " << prefix << "...");
}

std::string lineage_replid(const ProxyProcess& proxy) { return json_str(proxy.status(), "/proxy/replid"); }
uint64_t snapshot_offset(const ProxyProcess& proxy) {
    return static_cast<uint64_t>(json_int(proxy.status(), "/snapshot/offset"));
}

// Waits until the replica listed with `listening_port` has acked exactly `offset`.
json wait_acked(const ProxyProcess& proxy, int listening_port, uint64_t offset) {
    return proxy.wait_status("the replica on port " + std::to_string(listening_port) + " to have acked " +
                                 std::to_string(offset),
                             10, [&](const json& s, std::string&) {
                                 return replica_field(s, listening_port, "acked_offset") == std::to_string(offset);
                             });
}

// The ROLE entry [ip, port, ackoff] of the replica with that listening port (empty if none).
std::vector<std::string> role_entry(int proxy_port, int listening_port) {
    Reply role = RedisClient::connect(proxy_port).command({"ROLE"});
    if (role.type != Reply::Type::Array || role.elements.size() != 3) return {"(bad ROLE reply: " + role.describe() + ")"};
    for (const auto& e : role.elements[2].elements) {
        if (e.elements.size() == 3 && e.elements[1].str == std::to_string(listening_port))
            return {e.elements[0].str, e.elements[1].str, e.elements[2].str};
    }
    return {};
}

// The db the stream is in after its last SELECT (start_db if none).
int last_db(const std::vector<StreamCommand>& cmds, int start_db) {
    int db = start_db;
    for (const auto& c : cmds)
        if (c.args.size() == 2 && (c.args[0] == "SELECT" || c.args[0] == "select")) db = std::stoi(c.args[1]);
    return db;
}

std::vector<std::pair<int, Command>> writes_since(const RecordingWriter& w, size_t from) {
    return {w.writes().begin() + static_cast<std::ptrdiff_t>(from), w.writes().end()};
}

}  // namespace

TEST_CASE("compat: a scripted PSYNC2 replica (4.0+) gets +FULLRESYNC and the exact stream and its ACK and FACK counted and +CONTINUE <replid> from a command boundary") {
    ProxiedCluster c;
    c.start(1, 40);  // a SYNC-only master, the proxy, one Redis 7 replica
    const std::string replid = lineage_replid(*c.proxy);
    const uint64_t snap = snapshot_offset(*c.proxy);
    const std::string rdb = proxy_snapshot_bytes(*c.proxy);
    RecordingWriter w(c.master.port());
    some_writes(w, "before");  // in the log before the scripted replica connects

    // Redis 4.0-6.0: inline commands, one reply at a time.
    ScriptedReplica r(c.proxy->port());
    r.send("PING\r\n");
    CHECK(r.read_line() == "+PONG");
    r.send("REPLCONF listening-port 7001\r\n");
    CHECK(r.read_line() == "+OK");
    r.send("REPLCONF capa eof capa psync2\r\n");
    CHECK(r.read_line() == "+OK");
    r.send("PSYNC ? -1\r\n");
    CHECK(r.read_line() == "+FULLRESYNC " + replid + " " + std::to_string(snap));
    const std::string payload = r.read_payload();
    CHECK(payload.size() == rdb.size());
    CHECK_MESSAGE(payload == rdb, "the RDB sent differs from the proxy's snapshot file");
    r.begin_stream(snap + 1);

    some_writes(w, "online");
    c.wait_replicas_equal();
    uint64_t end = read_until_proxy_offset(r, *c.proxy);
    size_t consumed = 0;
    std::vector<StreamCommand> cmds = parse_stream(r.stream(), snap + 1, &consumed);  // throws unless multibulk only
    CHECK(consumed == r.stream().size());
    CHECK_MESSAGE(stream_writes(cmds) == w.writes(), "stream:" << describe_writes(stream_writes(cmds), 40)
                                                               << "\n  expected:" << describe_writes(w.writes(), 40));
    // A real Redis 7 replica reads the same offsets.
    wait_until("the Redis 7 replica at the scripted replica's offset", 10, [&] {
        r.read_for(0.02);
        return c.replicas[0]->info_int("replication", "master_repl_offset") == static_cast<int64_t>(r.stream_end());
    });
    end = r.stream_end();

    // REPLCONF ACK <off> and REPLCONF ACK <off> FACK <aofoff> (7.2+): counted, never answered.
    r.send(multibulk({"REPLCONF", "ACK", std::to_string(end - 10)}));
    json s = wait_acked(*c.proxy, 7001, end - 10);
    CHECK(replica_field(s, 7001, "state") == "online");
    CHECK(replica_field(s, 7001, "sync") == "full");
    CHECK(info_slave(RedisClient::connect(c.proxy->port()).must({"INFO", "replication"}).str, 7001)["offset"] ==
          std::to_string(end - 10));
    r.send(multibulk({"REPLCONF", "ACK", std::to_string(end), "FACK", std::to_string(end)}));
    s = wait_acked(*c.proxy, 7001, end);
    CHECK(json_int(find_replica(s, 7001), "/lag_bytes") == json_int(s, "/proxy/offset") - static_cast<int64_t>(end));
    {
        const std::string info = RedisClient::connect(c.proxy->port()).must({"INFO", "replication"}).str;
        auto slave = info_slave(info, 7001);
        CHECK(slave["state"] == "online");
        CHECK(slave["offset"] == std::to_string(end));
        CHECK(is_integer(slave["lag"]));
        CHECK(role_entry(c.proxy->port(), 7001) == std::vector<std::string>{"127.0.0.1", "7001", std::to_string(end)});
    }
    some_writes(w, "after-ack");
    end = read_until_proxy_offset(r, *c.proxy);
    cmds = r.stream_commands();  // still nothing but multibulk: no reply to the ACKs
    CHECK_MESSAGE(stream_writes(cmds) == w.writes(), "stream:" << describe_writes(stream_writes(cmds), 40));

    // Redis 6.2+: a new connection, the handshake pipelined after PING, PSYNC from the start of
    // the third-last command: +CONTINUE <replid> and exactly the bytes from there.
    REQUIRE(cmds.size() >= 4);
    const uint64_t from = cmds[cmds.size() - 3].offset;
    const int64_t partial_before = json_int(c.proxy->status(), "/counters/sync_partial_ok");
    ScriptedReplica r2(c.proxy->port());
    r2.send(multibulk({"PING"}));
    CHECK(r2.read_line() == "+PONG");
    r2.send(multibulk({"REPLCONF", "listening-port", "7002"}) + multibulk({"REPLCONF", "capa", "eof", "capa", "psync2"}));
    CHECK(r2.read_line() == "+OK");
    CHECK(r2.read_line() == "+OK");
    r2.send(multibulk({"PSYNC", replid, std::to_string(from)}));
    CHECK(r2.read_line() == "+CONTINUE " + replid);
    r2.begin_stream(from);
    read_until_proxy_offset(r2, *c.proxy);
    CHECK(r2.stream() == r.stream().substr(from - (snap + 1), r2.stream().size()));
    some_writes(w, "both");
    read_until_proxy_offset(r, *c.proxy);
    read_until_proxy_offset(r2, *c.proxy);
    CHECK_MESSAGE(r2.stream() == r.stream().substr(from - (snap + 1)),
                  "the resumed replica's bytes differ from the first connection's from offset " << from);
    s = c.proxy->status();
    CHECK(replica_field(s, 7002, "sync") == "partial");
    CHECK(replica_field(s, 7002, "state") == "online");
    CHECK(json_int(s, "/counters/sync_partial_ok") == partial_before + 1);
    CHECK(json_str(s, "/proxy/replid") == replid);

    // What it cannot do, it says with +FULLRESYNC: an offset past the end, another replid.
    const int64_t err_before = json_int(s, "/counters/sync_partial_err");
    for (const auto& [id, off] : std::vector<std::pair<std::string, uint64_t>>{
             {replid, r.stream_end() + 1000}, {std::string(40, 'f'), snap + 1}}) {
        ScriptedReplica r3(c.proxy->port());
        r3.send(multibulk({"REPLCONF", "capa", "psync2"}) + multibulk({"PSYNC", id, std::to_string(off)}));
        CHECK(r3.read_line() == "+OK");
        CHECK(r3.read_line() == "+FULLRESYNC " + replid + " " + std::to_string(snap));
        CHECK(r3.read_payload() == rdb);
    }
    CHECK(json_int(c.proxy->status(), "/counters/sync_partial_err") == err_before + 2);
    c.wait_replicas_equal();
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("compat: a scripted PSYNC1 replica (2.8-3.2) authenticates with AUTH <pass> one reply at a time and resumes with a bare +CONTINUE") {
    ProxiedCluster c;
    ProxyOptions options;
    options.requirepass = "old-pass";
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy-auth", c.master.port(), options);
    c.start(0, 40);
    const std::string replid = lineage_replid(*c.proxy);
    const uint64_t snap = snapshot_offset(*c.proxy);
    RecordingWriter w(c.master.port());
    some_writes(w, "before");

    // The 2.8 handshake: inline commands, each reply read before the next command. 2.8 goes on
    // after -NOAUTH to its PING; AUTH <pass> is the only form it knows.
    auto handshake = [&](ScriptedReplica& r, const std::string& psync) {
        r.send("PING\r\n");
        CHECK(r.read_line().rfind("-NOAUTH", 0) == 0);
        r.send("AUTH old-pass\r\n");
        CHECK(r.read_line() == "+OK");
        r.send("REPLCONF listening-port 7003\r\n");
        CHECK(r.read_line() == "+OK");
        r.send("REPLCONF capa eof\r\n");  // 3.2
        CHECK(r.read_line() == "+OK");
        r.send(psync);
    };
    {
        ScriptedReplica bad(c.proxy->port());
        bad.send("PSYNC ? -1\r\n");
        CHECK(bad.read_line().rfind("-NOAUTH", 0) == 0);
        bad.send("AUTH wrong-pass\r\n");
        CHECK(bad.read_line().rfind("-WRONGPASS", 0) == 0);
    }

    ScriptedReplica r(c.proxy->port());
    handshake(r, "PSYNC ? -1\r\n");
    CHECK(r.read_line() == "+FULLRESYNC " + replid + " " + std::to_string(snap));
    CHECK(r.read_payload() == proxy_snapshot_bytes(*c.proxy));
    r.begin_stream(snap + 1);
    some_writes(w, "online");
    uint64_t end = read_until_proxy_offset(r, *c.proxy);
    std::vector<StreamCommand> cmds = r.stream_commands();
    CHECK_MESSAGE(stream_writes(cmds) == w.writes(), "stream:" << describe_writes(stream_writes(cmds), 40));
    r.send(multibulk({"REPLCONF", "ACK", std::to_string(end)}));  // 2.8 ACKs in multibulk
    wait_acked(*c.proxy, 7003, end);

    // The link is lost; the master moves on; the replica comes back with its runid and offset.
    r.close();
    const size_t seen = w.writes().size();
    some_writes(w, "away");
    ScriptedReplica r2(c.proxy->port());
    handshake(r2, "PSYNC " + replid + " " + std::to_string(end + 1) + "\r\n");
    // 2.8-3.2 understand only the bare form: "+CONTINUE <id>" would be taken as... nothing else.
    CHECK(r2.read_line() == "+CONTINUE");
    r2.begin_stream(end + 1);
    some_writes(w, "back");
    read_until_proxy_offset(r2, *c.proxy);
    const std::vector<StreamCommand> resumed = r2.stream_commands();
    // The stream goes on in the db the replica was in: no SELECT is owed to it.
    CHECK_MESSAGE(stream_writes(resumed, last_db(cmds, 0)) == writes_since(w, seen),
                  "resumed stream:" << describe_writes(stream_writes(resumed, last_db(cmds, 0)), 40)
                                    << "\n  expected:" << describe_writes(writes_since(w, seen), 40));
    json s = c.proxy->status();
    CHECK(json_str(s, "/proxy/replid") == replid);  // no replid change on continue
    CHECK(replica_field(s, 7003, "sync") == "partial");
    CHECK(json_int(s, "/counters/sync_partial_ok") == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("compat: a scripted SYNC replica (2.6) gets no reply line and then the RDB and a multibulk stream") {
    ProxiedCluster c;
    c.start(1, 40);
    const uint64_t snap = snapshot_offset(*c.proxy);
    RecordingWriter w(c.master.port());
    some_writes(w, "before");

    ScriptedReplica r(c.proxy->port());
    r.send("PING\r\n");
    CHECK(r.read_line() == "+PONG");
    r.send("REPLCONF listening-port 7004\r\n");
    CHECK(r.read_line() == "+OK");
    r.send("SYNC\r\n");
    // No +FULLRESYNC: the first line after SYNC is "$<len>" (read_payload throws on anything else).
    const std::string payload = r.read_payload();
    CHECK_MESSAGE(payload == proxy_snapshot_bytes(*c.proxy), "the RDB differs from the proxy's snapshot file");
    r.begin_stream(snap + 1);
    some_writes(w, "online");
    c.wait_replicas_equal();
    read_until_proxy_offset(r, *c.proxy);
    // No "\n" keepalive to an online replica (it would shift its offsets): the stream stays
    // strict multibulk, also across more than a second of idleness.
    r.read_for(1.5);
    size_t consumed = 0;
    const std::vector<StreamCommand> cmds = parse_stream(r.stream(), snap + 1, &consumed);
    CHECK(consumed == r.stream().size());
    CHECK_MESSAGE(stream_writes(cmds) == w.writes(), "stream:" << describe_writes(stream_writes(cmds), 40));
    json s = c.proxy->status();
    CHECK(replica_field(s, 7004, "state") == "online");
    CHECK(replica_field(s, 7004, "sync") == "full");
    // The same bytes as a PSYNC replica: the Redis 7 replica is at the same offset.
    wait_until("the Redis 7 replica at the scripted SYNC replica's offset", 10, [&] {
        r.read_for(0.02);
        return c.replicas[0]->info_int("replication", "master_repl_offset") == static_cast<int64_t>(r.stream_end());
    });
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("compat: before the first snapshot 2.8 replicas fall back to SYNC and are held like 2.6 replicas and then served") {
    Sandbox sandbox;
    RedisServer source(sandbox, "source");
    source.start();
    RedisClient src = source.client();
    for (int db : {0, 2}) fill_dataset(src, db, 40);
    const std::string rdb = dump_rdb(source, sandbox.subdir("rdb") + "/source.rdb");

    ScriptedMaster legacy;
    ProxyProcess proxy(sandbox, "proxy", legacy.port());
    proxy.start();
    legacy.accept_client();
    legacy.serve_until_sync();  // the proxy now waits for the payload: no snapshot yet

    // 2.8: PSYNC gets an error (-NOMASTERLINK); 2.8 then sends SYNC on the same connection.
    ScriptedReplica r28(proxy.port());
    r28.send("PING\r\n");
    CHECK(r28.read_line() == "+PONG");
    r28.send("REPLCONF listening-port 7005\r\n");
    CHECK(r28.read_line() == "+OK");
    r28.send("PSYNC ? -1\r\n");
    const std::string refused = r28.read_line();
    CHECK_MESSAGE(refused.rfind("-NOMASTERLINK", 0) == 0, "PSYNC before the first snapshot -> " << refused);
    r28.send("SYNC\r\n");
    // 2.6: SYNC straight away.
    ScriptedReplica r26(proxy.port());
    r26.send("PING\r\n");
    CHECK(r26.read_line() == "+PONG");
    r26.send("REPLCONF listening-port 7006\r\n");
    CHECK(r26.read_line() == "+OK");
    r26.send("SYNC\r\n");

    // Held: a "\n" about once a second, nothing else, and listed as wait_bgsave.
    const std::string held28 = r28.read_for(2.3);
    const std::string held26 = r26.read_for(0.1);
    CHECK_MESSAGE((held28.size() >= 2 && held28.find_first_not_of('\n') == std::string::npos),
                  "2.8 replica got " << held28.size() << " bytes while held: " << held28.substr(0, 80));
    CHECK_MESSAGE((held26.size() >= 2 && held26.find_first_not_of('\n') == std::string::npos),
                  "2.6 replica got " << held26.size() << " bytes while held: " << held26.substr(0, 80));
    CHECK_FALSE(r28.closed());
    CHECK_FALSE(r26.closed());
    json s = proxy.status();
    CHECK(replica_field(s, 7005, "state") == "wait_bgsave");
    CHECK(replica_field(s, 7006, "state") == "wait_bgsave");
    {
        const std::string info = RedisClient::connect(proxy.port()).must({"INFO", "replication"}).str;
        CHECK(info_slave(info, 7005)["state"] == "wait_bgsave");
        CHECK(info_slave(info, 7006)["state"] == "wait_bgsave");
        CHECK(info_value(info, "connected_slaves") == "2");
    }

    LegacyStream stream;
    stream.command({"SET", "held:a", "1"});
    stream.select(2);
    stream.command({"RPUSH", "held:list", "x", "y"});
    legacy.send_payload(rdb, 1, stream.take_bytes());
    const uint64_t snap = static_cast<uint64_t>(json_int(proxy.wait_snapshot(), "/snapshot/offset"));
    stream.command({"INCR", "held:n"});
    stream.select(0);
    stream.command({"HSET", "held:h", "f", "v"});
    stream.ping_multibulk();
    legacy.send(stream.take_bytes());
    std::vector<std::pair<int, Command>> expected = stream.take_writes();

    for (ScriptedReplica* r : {&r28, &r26}) {
        // No +FULLRESYNC line, also for the 2.8 replica that came through PSYNC: "$<len>" and the RDB.
        CHECK(r->read_payload() == rdb);
        r->begin_stream(snap + 1);
        read_until_proxy_offset(*r, proxy);
        const std::vector<StreamCommand> cmds = r->stream_commands();
        CHECK_MESSAGE(stream_writes(cmds) == expected, "stream:" << describe_writes(stream_writes(cmds), 40));
    }
    s = proxy.status();
    CHECK(replica_field(s, 7005, "state") == "online");
    CHECK(replica_field(s, 7006, "state") == "online");
    const size_t common = std::min(r28.stream().size(), r26.stream().size());
    CHECK(r28.stream().substr(0, common) == r26.stream().substr(0, common));
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: INFO replication and stats and server and ROLE match a Redis 7 master's fields and types and slaveN lines show wait_bgsave and send_bulk and online") {
    Sandbox sandbox;
    // The source holds the data and is the reference master for the field lists: a real Redis 7
    // master with one replica.
    RedisServer source(sandbox, "source");
    source.start();
    {
        RedisClient src = source.client();
        fill_dataset(src, 0, 30);
        // ~12 MB that does not compress: the RDB outgrows the socket buffers (the kernel's send
        // buffer grows to 4 MB at most) of a reader that does not read, which then stays in
        // send_bulk.
        std::mt19937_64 rng(42);
        std::vector<Command> big;
        for (int i = 0; i < 12; ++i) {
            std::string v(1 << 20, '\0');
            for (size_t j = 0; j < v.size(); j += 8) {
                const uint64_t x = rng();
                std::memcpy(&v[j], &x, 8);
            }
            big.push_back({"SET", "big:" + std::to_string(i), std::move(v)});
        }
        src.must_pipeline(big);
    }
    RedisServer reference_replica(sandbox, "reference-replica", replica_options(source.port()));
    reference_replica.start();
    wait_until("the reference replica online", 30,
               [&] { return info_slave(source.info("replication"), reference_replica.port())["state"] == "online"; });
    const std::string rdb = dump_rdb(source, sandbox.subdir("rdb") + "/source.rdb");
    REQUIRE(rdb.size() > (12u << 20));

    ScriptedMaster legacy;
    ProxyProcess proxy(sandbox, "proxy", legacy.port());
    proxy.start();
    legacy.accept_client();
    legacy.serve_until_sync();

    // A SYNC client that will not read: wait_bgsave now, send_bulk once the snapshot exists.
    ScriptedReplica slow(proxy.port(), 64 * 1024);
    slow.send("REPLCONF listening-port 7010\r\n");
    CHECK(slow.read_line() == "+OK");
    slow.send("SYNC\r\n");
    proxy.wait_status("the SYNC client listed as wait_bgsave", 10, [](const json& s, std::string&) {
        return replica_field(s, 7010, "state") == "wait_bgsave";
    });
    RedisClient pc = RedisClient::connect(proxy.port());
    CHECK(info_slave(pc.must({"INFO", "replication"}).str, 7010)["state"] == "wait_bgsave");
    CHECK(pc.must({"ROLE"}).elements.at(2).elements.empty());  // ROLE lists online replicas only

    legacy.send_payload(rdb, 1, multibulk({"SET", "after", "rdb"}));
    proxy.wait_snapshot(60);
    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    proxy.wait_replica_online(replica.port(), 60);
    wait_until("the Redis 7 replica to apply the stream", 30,
               [&] { return replica.client().command({"GET", "after"}).str == "rdb"; });
    json s = proxy.wait_status("the Redis 7 replica to ack the proxy's offset", 10, [&](const json& st, std::string&) {
        return replica_field(st, replica.port(), "acked_offset") == std::to_string(json_int(st, "/proxy/offset"));
    });
    CHECK(replica_field(s, 7010, "state") == "send_bulk");
    const int64_t bulk_sent = json_int(find_replica(s, 7010), "/bulk_bytes_sent");
    CHECK(bulk_sent < static_cast<int64_t>(rdb.size()));

    // INFO replication: the same fields in the same order as the real master's, same types.
    const std::string ref_info = source.info("replication");
    const std::string info = pc.must({"INFO", "replication"}).str;
    auto collapse = [](std::vector<std::string> names) {
        names.erase(std::unique(names.begin(), names.end()), names.end());
        return names;
    };
    CHECK(collapse(info_field_names(info)) == collapse(info_field_names(ref_info)));
    std::map<std::string, std::string> ref_values, values;
    for (const auto& [k, v] : info_fields(ref_info)) ref_values[k] = v;
    for (const auto& [k, v] : info_fields(info)) values[k] = v;
    for (const auto& [k, v] : ref_values) {
        if (is_integer(v)) CHECK_MESSAGE(is_integer(values[k]), "INFO replication " << k << ":" << values[k]);
    }
    CHECK(values["role"] == "master");
    CHECK(values["connected_slaves"] == "2");
    CHECK(is_replid(values["master_replid"]));
    CHECK(values["master_replid"] == json_str(s, "/proxy/replid"));
    CHECK(values["master_replid2"].size() == 40);
    CHECK(std::stoll(values["master_repl_offset"]) >= json_int(s, "/proxy/offset"));
    CHECK(values["repl_backlog_active"] == "1");
    CHECK(std::stoll(values["repl_backlog_first_byte_offset"]) + std::stoll(values["repl_backlog_histlen"]) - 1 ==
          std::stoll(values["master_repl_offset"]));
    // --backlog-size is not enforced yet: the size shown is what is kept, not the 256 MB configured.
    CHECK(values["repl_backlog_size"] == values["repl_backlog_histlen"]);
    // slaveN lines: the real master's keys, in order, with the real state of each replica.
    std::vector<std::string> ref_keys;
    for (const auto& [k, v] : info_kv_list(info_value(ref_info, "slave0"))) ref_keys.push_back(k);
    for (const std::string n : {"slave0", "slave1"}) {
        std::vector<std::string> keys;
        for (const auto& [k, v] : info_kv_list(info_value(info, n))) {
            keys.push_back(k);
            if (k == "port" || k == "offset" || k == "lag") CHECK_MESSAGE(is_integer(v), n << " " << k << "=" << v);
        }
        CHECK(keys == ref_keys);
    }
    CHECK(info_slave(info, 7010)["state"] == "send_bulk");
    auto online = info_slave(info, replica.port());
    CHECK(online["state"] == "online");
    CHECK(online["ip"] == "127.0.0.1");
    CHECK(std::stoll(online["offset"]) >= json_int(s, "/proxy/offset"));
    CHECK(std::stoll(online["offset"]) <= std::stoll(values["master_repl_offset"]));

    // ROLE: ["master", <int>, [[ip, "port", "ackoff"], ...]] as the real master, online only.
    Reply ref_role = source.client().must({"ROLE"});
    Reply role = pc.must({"ROLE"});
    REQUIRE(role.elements.size() == 3);
    CHECK(role.elements[0].type == ref_role.elements[0].type);
    CHECK(role.elements[0].str == "master");
    CHECK(role.elements[1].type == Reply::Type::Integer);
    CHECK(role.elements[1].integer >= json_int(s, "/proxy/offset"));
    REQUIRE(role.elements[2].elements.size() == 1);
    const Reply& entry = role.elements[2].elements[0];
    const Reply& ref_entry = ref_role.elements.at(2).elements.at(0);
    REQUIRE(entry.elements.size() == 3);
    for (size_t i = 0; i < 3; ++i) CHECK(entry.elements[i].type == ref_entry.elements[i].type);
    CHECK(entry.elements[1].str == std::to_string(replica.port()));
    CHECK(std::stoll(entry.elements[2].str) >= json_int(s, "/proxy/offset"));
    CHECK(std::stoll(entry.elements[2].str) <= role.elements[1].integer);

    // INFO stats and INFO server: only names a Redis 7 server uses, with its value types.
    for (const std::string section : {"stats", "server"}) {
        std::map<std::string, std::string> ref;
        for (const auto& [k, v] : info_fields(source.info(section))) ref[k] = v;
        for (const auto& [k, v] : info_fields(pc.must({"INFO", section}).str)) {
            if (k.rfind("psync_proxy_", 0) == 0) continue;  // the proxy's own fields
            CHECK_MESSAGE(ref.count(k) == 1, "INFO " << section << " has " << k << ", which Redis 7 does not");
            if (ref.count(k) && is_integer(ref[k])) CHECK_MESSAGE(is_integer(v), "INFO " << section << " " << k << ":" << v);
        }
    }
    std::map<std::string, std::string> stats, server;
    for (const auto& [k, v] : info_fields(pc.must({"INFO", "stats"}).str)) stats[k] = v;
    for (const auto& [k, v] : info_fields(pc.must({"INFO", "server"}).str)) server[k] = v;
    for (const std::string k : {"sync_full", "sync_partial_ok", "sync_partial_err"})
        CHECK_MESSAGE(is_integer(stats[k]), "INFO stats " << k << ":" << stats[k]);
    CHECK(stats["sync_full"] == std::to_string(json_int(proxy.status(), "/counters/sync_full")));
    CHECK(server["tcp_port"] == std::to_string(proxy.port()));
    CHECK(server["process_id"] == std::to_string(json_int(s, "/proxy/pid")));
    CHECK(server["run_id"].size() == 40);
    CHECK(server["redis_mode"] == "standalone");
    CHECK(std::count(server["redis_version"].begin(), server["redis_version"].end(), '.') == 2);
    const std::string all = pc.must({"INFO"}).str;
    for (const std::string header : {"# Server", "# Replication", "# Stats"})
        CHECK_MESSAGE(all.find(header) != std::string::npos, "INFO without a section lacks " << header);

    // The slow reader catches up: the whole RDB, then online.
    CHECK(slow.read_payload(60) == rdb);
    proxy.wait_status("the slow SYNC client online", 15, [](const json& st, std::string&) {
        return replica_field(st, 7010, "state") == "online";
    });
    CHECK(info_slave(pc.must({"INFO", "replication"}).str, 7010)["state"] == "online");
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: Redis 7 replicas authenticate with masterauth (AUTH pass) and masteruser (AUTH user pass) and resume after a restart") {
    ProxiedCluster c;
    ProxyOptions options;
    options.requirepass = "s3cret";
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy-auth", c.master.port(), options);
    c.start(0, 50);
    RedisServerOptions pass_only;
    pass_only.extra_config = {"masterauth s3cret"};
    RedisServerOptions with_user;
    with_user.extra_config = {"masteruser default", "masterauth s3cret"};
    RedisServer& a = c.add_replica("replica-pass", pass_only);
    RedisServer& b = c.add_replica("replica-user", with_user);
    c.proxy->wait_replica_online(a.port());
    c.proxy->wait_replica_online(b.port());
    c.wait_replicas_equal();

    // What an unauthenticated or wrongly authenticated client gets.
    {
        RedisClient x = RedisClient::connect(c.proxy->port());
        check_reply_prefix(x, {"PING"}, "NOAUTH");
        check_reply_prefix(x, {"PSYNC", "?", "-1"}, "NOAUTH");
        check_reply_prefix(x, {"INFO", "replication"}, "NOAUTH");
        check_reply_prefix(x, {"AUTH", "wrong"}, "WRONGPASS");
        check_reply_prefix(x, {"AUTH", "somebody", "s3cret"}, "WRONGPASS");
        CHECK(x.command({"AUTH", "default", "s3cret"}).str == "OK");
        CHECK(x.command({"PING"}).str == "PONG");
    }
    RedisServerOptions wrong = replica_options(c.proxy->port());
    wrong.extra_config = {"masterauth not-the-password"};
    RedisServer refused(c.sandbox, "replica-wrong-pass", wrong);
    refused.start();
    wait_until("the replica with a wrong masterauth to be refused", 15,
               [&] { return refused.log_count("Unable to AUTH to MASTER") >= 1; });
    CHECK(replica_field(c.proxy->status(), refused.port(), "state") != "online");
    refused.stop();

    // The masteruser replica restarts (SHUTDOWN SAVE) under writes: AUTH <user> <pass> again,
    // then PSYNC <replid> <offset> from its RDB and +CONTINUE.
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(30);
    b.shutdown_save();
    writer.wait_more_rounds(50);
    b.start();
    c.proxy->wait_status("replica-user back online after a partial resync", 30, [&](const json& s, std::string&) {
        return json_int(s, "/counters/sync_partial_ok") >= 1 && replica_field(s, b.port(), "state") == "online";
    });
    writer.wait_more_rounds(30);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    c.wait_replicas_equal();
    CHECK(b.log_count("Successful partial resynchronization with master") == 1);
    CHECK(b.log_count("Full resync from master") == 1);
    CHECK(a.log_count("Full resync from master") == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("compat: --requireuser: a Redis 7 replica with that masteruser is accepted and other users are not") {
    ProxiedCluster c;
    ProxyOptions options;
    options.requirepass = "s3cret";
    options.extra_args = {"--requireuser", "replicator"};
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy-user", c.master.port(), options);
    c.start(0, 30);
    {
        RedisClient x = RedisClient::connect(c.proxy->port());
        check_reply_prefix(x, {"AUTH", "default", "s3cret"}, "WRONGPASS");
        check_reply_prefix(x, {"AUTH", "replicator", "wrong"}, "WRONGPASS");
        CHECK(x.command({"AUTH", "replicator", "s3cret"}).str == "OK");
    }
    RedisServerOptions with_user;
    with_user.extra_config = {"masteruser replicator", "masterauth s3cret"};
    RedisServer& r = c.add_replica("replica-user", with_user);
    c.proxy->wait_replica_online(r.port(), 10);
    c.wait_replicas_equal();
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("compat: redis-cli --replica shows the proxy's live stream") {
    ProxiedCluster c;
    c.start(0, 20);
    const int64_t snapshot_bytes = json_int(c.proxy->status(), "/snapshot/bytes");
    const std::string out = c.sandbox.subdir("cli") + "/replica.out";
    c.sandbox.watch_log("redis-cli --replica", out);
    Process cli;
    cli.spawn({find_executable("redis-cli"), "-h", "127.0.0.1", "-p", std::to_string(c.proxy->port()), "--replica"}, out);
    wait_until("redis-cli --replica to finish its sync", 15,
               [&] { return tail_file(out, 50).find("Logging commands from master") != std::string::npos; });
    CHECK_MESSAGE(tail_file(out, 50).find(std::to_string(snapshot_bytes) + " bytes") != std::string::npos,
                  "redis-cli did not get the " << snapshot_bytes << "-byte snapshot:\n" << tail_file(out, 50));

    RedisClient m = c.master.client();
    m.must({"SET", "cli:key", "hello world"});
    m.must({"SELECT", "4"});
    m.must({"RPUSH", "cli:list", "x", "y z"});
    for (const std::string line : {"\"SET\",\"cli:key\",\"hello world\"", "\"SELECT\",\"4\"",
                                   "\"RPUSH\",\"cli:list\",\"x\",\"y z\""}) {
        wait_until("redis-cli --replica to print " + line, 10,
                   [&] { return tail_file(out, 100).find(line) != std::string::npos; });
    }
    json s = c.proxy->status();
    REQUIRE(json_at(s, "/replicas").size() == 1);
    CHECK(json_str(json_at(s, "/replicas")[0], "/state") == "online");
    CHECK(cli.running());
    cli.stop(5);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("compat: redis-cli --rdb gets the snapshot and the proxy closes the connection after it and the file loads in redis-server") {
    ProxiedCluster c;
    c.start(0, 80);
    const std::string snapshot = proxy_snapshot_bytes(*c.proxy);

    const std::string path = c.sandbox.subdir("cli") + "/proxy.rdb";
    const int code = run_command({find_executable("redis-cli"), "-h", "127.0.0.1", "-p", std::to_string(c.proxy->port()),
                                  "--rdb", path},
                                 path + ".log", 30);
    CHECK_MESSAGE(code == 0, tail_file(path + ".log", 20));
    CHECK(read_file(path) == snapshot);

    // What redis-cli sends (REPLCONF rdb-only 1, SYNC), scripted: the proxy itself closes the
    // connection once the RDB is out, and forgets the client.
    ScriptedReplica r(c.proxy->port());
    r.send("REPLCONF rdb-only 1\r\n");
    CHECK(r.read_line() == "+OK");
    r.send("SYNC\r\n");
    CHECK(r.read_payload() == snapshot);
    CHECK_MESSAGE(r.wait_closed(5), "the proxy kept the rdb-only connection open after the RDB");
    CHECK(r.take_buffered().empty());  // nothing after the RDB
    c.proxy->wait_status("no replica left listed", 5, [](const json& s, std::string&) {
        return json_at(s, "/replicas").empty();
    });

    // The file loads in a Redis 7 server and holds what the master held.
    RedisServer loaded(c.sandbox, "loaded");
    std::filesystem::copy_file(path, loaded.dir() + "/dump.rdb");
    loaded.start();
    const std::string diff = diff_keyspaces(c.master.keyspace(), loaded.keyspace(), "master", "loaded rdb");
    CHECK_MESSAGE(diff.empty(), diff);
    check_clean_shutdown(*c.proxy);
}
