// Compatibility with every master generation (issue 3, upstream side). Old dialects are played
// byte for byte by a scripted master (2.4: REDIS0002 RDB crafted here, inline PING, no REPLCONF;
// 2.6: -ERR to PSYNC, silence and "\n" before "$", inline select; 2.8: +FULLRESYNC and a bare
// +CONTINUE; 4.0+: +CONTINUE <newid>, REPLCONF GETACK). Real Redis 7 masters are used with and
// without PSYNC. Every scenario ends with Redis 7 replicas behind the proxy equal to a real
// server holding what the master holds.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "tests/support/compat.h"
#include "tests/support/keyspace.h"
#include "tests/support/legacy_rdb.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

bool named(const Command& cmd, const std::string& name) { return !cmd.empty() && upper(cmd[0]) == name; }

std::string describe(const std::vector<Command>& cmds) {
    std::string out;
    for (const auto& c : cmds) {
        out += "\n    ";
        for (const auto& a : c) out += a.substr(0, 50) + " ";
    }
    return out;
}

// Answers the proxy's handshake with `replier` until it sends SYNC, or a PSYNC the replier
// leaves unanswered (nullopt); returns every command received, that one last: the test
// answers it.
std::vector<Command> serve_handshake(ScriptedMaster& m, const LegacyReplier& replier, double timeout_s = 15) {
    std::vector<Command> received;
    const auto start = Clock::now();
    while (true) {
        const double left = timeout_s - seconds_since(start);
        if (left <= 0) throw std::runtime_error("scripted master: no PSYNC or SYNC within the time limit" + describe(received));
        Command cmd = m.read_command(left);
        received.push_back(cmd);
        if (named(cmd, "SYNC")) return received;
        auto reply = replier(cmd);
        if (!reply && named(cmd, "PSYNC")) return received;
        if (reply) m.send(*reply);
    }
}

// Redis 2.4: no REPLCONF, no PSYNC, INFO without sections, AUTH from the config file's requirepass.
LegacyReplier redis24(const std::string& password) {
    return [password](const Command& cmd) -> std::optional<std::string> {
        const std::string name = upper(cmd.at(0));
        if (name == "AUTH") return cmd.size() == 2 && cmd[1] == password ? "+OK\r\n" : "-ERR invalid password\r\n";
        if (name == "PING") return "+PONG\r\n";
        if (name == "INFO")
            return info_bulk("redis_version:2.4.18\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\narch_bits:64\r\n"
                             "multiplexing_api:epoll\r\nprocess_id:4242\r\nuptime_in_seconds:86400\r\nrole:master\r\n");
        if (name == "SYNC") return std::nullopt;
        return "-ERR unknown command '" + cmd[0] + "'\r\n";
    };
}

// Redis 2.8 (PSYNC1) and 4.0+ (PSYNC2): they differ here in "REPLCONF capa", which 2.8 does not know.
LegacyReplier redis_psync_master(const std::string& version, bool knows_capa) {
    return [version, knows_capa](const Command& cmd) -> std::optional<std::string> {
        const std::string name = upper(cmd.at(0));
        if (name == "PING") return "+PONG\r\n";
        if (name == "AUTH") return "+OK\r\n";
        if (name == "INFO")
            return info_bulk("# Server\r\nredis_version:" + version + "\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n");
        if (name == "REPLCONF") {
            const std::string opt = cmd.size() >= 2 ? upper(cmd[1]) : "";
            if (opt == "LISTENING-PORT" || (opt == "CAPA" && knows_capa)) return "+OK\r\n";
            if (opt == "ACK") return std::nullopt;
            return "-ERR Unrecognized REPLCONF option: " + (cmd.size() >= 2 ? cmd[1] : std::string()) + "\r\n";
        }
        if (name == "PSYNC") return std::nullopt;  // answered by the test
        return "-ERR unknown command '" + cmd[0] + "'\r\n";
    };
}

// A 2.8+ master's stream: multibulk only, SELECT before the first command (a new replica's db
// is unknown to the master) and when the db changes; offsets in the master's offset space.
class ModernStream {
public:
    explicit ModernStream(uint64_t offset) : offset_(offset) {}
    void command(int db, const Command& cmd) {
        if (db != db_) {
            bytes_ += multibulk({"SELECT", std::to_string(db)});
            db_ = db;
        }
        bytes_ += multibulk(cmd);
        writes_.emplace_back(db, cmd);
    }
    void raw(const std::string& bytes) { bytes_ += bytes; }  // PING, REPLCONF GETACK: counted too
    // Bytes produced since the last call; offset() is then the offset of their last byte.
    std::string take() {
        offset_ += bytes_.size();
        return std::exchange(bytes_, std::string());
    }
    uint64_t offset() const { return offset_; }
    std::vector<std::pair<int, Command>> take_writes() { return std::exchange(writes_, {}); }

private:
    uint64_t offset_;
    int db_ = -1;
    std::string bytes_;
    std::vector<std::pair<int, Command>> writes_;
};

// Reads what the proxy sends upstream until a REPLCONF ACK <expected> arrives: every ACK must
// be at most `expected` and nothing but ACKs may come. Returns the ACK values seen.
std::vector<uint64_t> wait_upstream_ack(ScriptedMaster& m, uint64_t expected, double timeout_s = 5) {
    std::vector<uint64_t> acks;
    const auto start = Clock::now();
    while (true) {
        const double left = timeout_s - seconds_since(start);
        if (left <= 0) {
            FAIL("no REPLCONF ACK " << expected << " upstream within " << timeout_s << " s; ACKs seen: " << acks.size()
                                    << (acks.empty() ? "" : ", last " + std::to_string(acks.back())));
        }
        Command cmd;
        try {
            cmd = m.read_command(left);
        } catch (const std::exception& e) {
            FAIL("waiting for REPLCONF ACK " << expected << ": " << std::string(e.what()));
        }
        REQUIRE_MESSAGE((named(cmd, "REPLCONF") && cmd.size() == 3 && upper(cmd[1]) == "ACK"),
                        "the proxy sent upstream:" << describe({cmd}));
        const uint64_t v = std::stoull(cmd[2]);
        CHECK_MESSAGE(v <= expected, "ACK " << v << " is past the stream sent (" << expected << ")");
        acks.push_back(v);
        if (v == expected) return acks;
    }
}

// A source server (the data the scripted master "holds") with an RDB of it.
struct Source {
    explicit Source(Sandbox& sandbox) : server(sandbox, "source") {
        server.start();
        RedisClient c = server.client();
        for (int db : {0, 3}) fill_dataset(c, db, 40);
        rdb = dump_rdb(server, sandbox.subdir("rdb") + "/source.rdb");
    }
    void apply(const std::vector<std::pair<int, Command>>& writes) {
        RedisClient c = server.client();
        apply_writes(c, writes);
    }
    RedisServer server;
    std::string rdb;
};

const std::string kRunid28 = "7f3a2c11d4e5f60718293a4b5c6d7e8f90a1b2c3";
const std::string kReplid4a = "1111111111111111111111111111111111111111";
const std::string kReplid4b = "2222222222222222222222222222222222222222";

}  // namespace

TEST_CASE("compat: a scripted 2.4 master with a crafted REDIS0002 RDB and inline PING and no REPLCONF feeds Redis 7 replicas") {
    Sandbox sandbox;
    // The RDB as 2.4 writes it, byte by byte; the reference server gets the same content.
    const int64_t now_s = unix_time_ms() / 1000;
    Rdb2Builder b;
    b.select_db(0);
    b.string("s:plain", "hello");
    b.string_int("s:int8", 123);
    b.string_int("s:int16", -20000);
    b.string_int("s:int32", 1234567890);
    b.string("s:len14", std::string(300, 'x'));
    b.string("s:len32", std::string(20000, 'y'));
    b.string("s:binary", std::string("\0\r\n\xff", 4));
    b.expire_at_seconds(now_s + 3600);  // 0xFD: what 2.4 writes
    b.string("s:ttl", "expires in an hour");
    b.list("l:list", {"a", "b", "c", "a"});
    b.set("set:s", {"m1", "m2", "m3"});
    b.zset("z:z", {{"one", 1}, {"half", 0.5}, {"neg", -3.25}, {"top", std::numeric_limits<double>::infinity()}});
    b.hash("h:h", {{"f1", "v1"}, {"f2", ""}});
    b.select_db(1);
    b.expire_at_ms(now_s * 1000 + 7'200'000);  // 0xFC (2.6+), which Redis 7 reads in any version
    b.hash("h:ttl", {{"a", "1"}});
    b.list("l:db1", {"x"});
    b.select_db(3);
    b.zset("z:db3", {{"m", 2.5}, {"n", -std::numeric_limits<double>::infinity()}});
    b.set("set:db3", {"1", "2", "3"});
    const std::string rdb = b.finish();
    REQUIRE(rdb.rfind("REDIS0002", 0) == 0);

    RedisServer reference(sandbox, "reference");
    reference.start();
    RedisClient ref = reference.client();
    apply_writes(ref, b.writes());

    ScriptedMaster legacy;
    ProxyOptions options;
    options.masterauth = "legacy-pw";
    ProxyProcess proxy(sandbox, "proxy", legacy.port(), options);
    proxy.start();
    legacy.accept_client();
    const std::vector<Command> handshake = serve_handshake(legacy, redis24("legacy-pw"));
    INFO("handshake:" << describe(handshake));
    REQUIRE(named(handshake.back(), "SYNC"));
    CHECK(handshake.front() == Command{"AUTH", "legacy-pw"});
    CHECK(std::count_if(handshake.begin(), handshake.end(), [](const Command& c) { return named(c, "PSYNC"); }) <= 1);
    for (const auto& cmd : handshake)
        CHECK_MESSAGE(!(named(cmd, "REPLCONF") && cmd.size() >= 2 && upper(cmd[1]) == "CAPA" && upper(cmd[2]) == "EOF"),
                      "capa eof upstream");

    // 2.4's stream: multibulk commands, inline `select N`, inline PING, "\n" before "$".
    LegacyStream stream;
    stream.command({"SET", "s:plain", "changed"});
    stream.ping_inline();
    stream.select(3);
    stream.command({"SADD", "set:db3", "4"});
    stream.command({"ZADD", "z:db3", "7", "m"});
    legacy.send_payload(rdb, 3, stream.take_bytes());
    proxy.wait_snapshot();

    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    proxy.wait_replica_online(replica.port());
    stream.ping_inline();
    stream.select(1);
    stream.command({"RPUSH", "l:db1", "y"});
    stream.command({"HSET", "h:ttl", "b", "2"});
    stream.select(0);
    stream.command({"DEL", "s:int16"});
    stream.command({"INCR", "s:int8"});
    stream.ping_inline();
    legacy.send_chunked(stream.take_bytes(), 5, 1);
    apply_writes(ref, stream.take_writes());
    wait_keyspace_equal(reference, replica);

    // No ACK, nothing at all, goes to a SYNC-only master after SYNC.
    const std::string upstream_bytes = legacy.received_bytes(1.3);
    CHECK_MESSAGE(upstream_bytes.empty(), "the proxy sent upstream after SYNC: " << upstream_bytes.substr(0, 200));
    json s = proxy.status();
    CHECK(json_str(s, "/upstream/version") == "2.4.18");
    CHECK(json_str(s, "/upstream/mode") == "sync");
    CHECK(json_str(s, "/upstream/replid") == "");
    CHECK(json_int(s, "/snapshot/bytes") == static_cast<int64_t>(rdb.size()));
    const Keyspace ks = replica.keyspace();
    CHECK(ks.at({0, "l:list"}).type == "list");
    CHECK(ks.at({0, "z:z"}).value.find("\"top\": \"inf\"") != std::string::npos);
    CHECK(ks.at({1, "h:ttl"}).has_ttl);
    CHECK(ks.at({0, "s:ttl"}).has_ttl);
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: a scripted 2.6 master refusing PSYNC and silent then sending newline keepalives before the payload feeds Redis 7 replicas") {
    Sandbox sandbox;
    Source source(sandbox);

    ScriptedMaster legacy;
    ProxyOptions options;
    options.extra_args = {"--upstream-timeout", "2"};
    ProxyProcess proxy(sandbox, "proxy", legacy.port(), options);
    proxy.start();
    // Started now, the replica is turned away (-NOMASTERLINK) until the snapshot exists: once
    // the stream flows the test never leaves the upstream silent for 2 s.
    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    legacy.accept_client();
    // redis26_reply: INFO with redis_version:2.6.17, REPLCONF capa refused, PSYNC unknown.
    const std::vector<Command> handshake = legacy.serve_until_sync();
    INFO("handshake:" << describe(handshake));
    // auto mode: PSYNC first, then SYNC on the same connection after the -ERR.
    REQUIRE(handshake.size() >= 2);
    CHECK(named(handshake[handshake.size() - 2], "PSYNC"));
    CHECK(handshake[handshake.size() - 2] == Command{"PSYNC", "?", "-1"});

    // "Waiting for next BGSAVE": 1.5 s of silence, then "\n" every 0.7 s: 3.6 s before "$",
    // longer than --upstream-timeout 2, but never 2 s without a byte.
    sleep_ms(1500);
    json s = proxy.status();
    CHECK(json_str(s, "/upstream/state") == "waiting_payload");
    CHECK(json_str(s, "/upstream/version") == "2.6.17");
    for (int i = 0; i < 3; ++i) {
        legacy.send("\n");
        sleep_ms(700);
    }
    s = proxy.status();
    CHECK(json_str(s, "/upstream/state") == "waiting_payload");
    CHECK_MESSAGE(json_str(s, "/upstream/last_error") == "", "the link failed while waiting: " << s.dump());

    LegacyStream stream;
    stream.command({"SET", "k26:a", "1"});
    stream.select(3);
    stream.command({"RPUSH", "k26:l", "x"});
    stream.ping_multibulk();
    legacy.send_payload(source.rdb, 1, stream.take_bytes());
    proxy.wait_snapshot();
    std::string upstream_bytes;
    for (int i = 0; i < 4; ++i) {  // 2.6 PINGs keep the link up; nothing may come back
        stream.select(i % 2 == 0 ? 0 : 3);
        stream.command({"INCR", "k26:n"});
        stream.ping_multibulk();
        legacy.send(stream.take_bytes());
        upstream_bytes += legacy.received_bytes(0.4);
    }
    CHECK_MESSAGE(upstream_bytes.empty(), "the proxy sent upstream after SYNC: " << upstream_bytes.substr(0, 200));
    source.apply(stream.take_writes());
    proxy.wait_replica_online(replica.port());
    wait_keyspace_equal(source.server, replica);
    s = proxy.status();
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(json_str(s, "/upstream/mode") == "sync");
    CHECK(json_at(s, "/upstream/offset").is_null());
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: a scripted 2.8 master: a link cut mid-command is resumed with PSYNC <runid> <exact offset> and a bare +CONTINUE and replicas see only a pause") {
    Sandbox sandbox;
    Source source(sandbox);
    ScriptedMaster m;
    ProxyProcess proxy(sandbox, "proxy", m.port());
    proxy.start();
    m.accept_client();
    std::vector<Command> handshake = serve_handshake(m, redis_psync_master("2.8.24", false));
    INFO("handshake:" << describe(handshake));
    CHECK(handshake.back() == Command{"PSYNC", "?", "-1"});

    m.send("+FULLRESYNC " + kRunid28 + " 1000\r\n");
    ModernStream stream(1000);
    stream.command(0, {"SET", "k28:a", "1"});
    stream.command(3, {"RPUSH", "k28:l", "x", "y"});
    stream.raw(multibulk({"PING"}));
    m.send_payload(source.rdb, 2, stream.take());
    source.apply(stream.take_writes());
    proxy.wait_snapshot();
    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    proxy.wait_replica_online(replica.port());
    wait_keyspace_equal(source.server, replica);

    json s = proxy.status();
    CHECK(json_str(s, "/upstream/mode") == "psync");
    CHECK(json_str(s, "/upstream/version") == "2.8.24");
    CHECK(json_str(s, "/upstream/replid") == kRunid28);
    CHECK(json_int(s, "/upstream/offset") == static_cast<int64_t>(stream.offset()));
    const std::string replid = json_str(s, "/proxy/replid");
    const int64_t sync_full = json_int(s, "/counters/sync_full");
    wait_upstream_ack(m, stream.offset());  // REPLCONF ACK <offset>, about once a second

    // More writes, then the link breaks in the middle of a command.
    stream.command(3, {"SET", "k28:b", "2"});
    stream.command(0, {"HSET", "k28:h", "f", "v"});
    stream.command(3, {"INCR", "k28:n"});
    const std::string whole = stream.take();
    source.apply(stream.take_writes());
    const Command cut = {"SET", "k28:cut", "a value the link cut in two"};
    const std::string cut_bytes = multibulk(cut);
    m.send(whole + cut_bytes.substr(0, cut_bytes.size() / 2));
    wait_keyspace_equal(source.server, replica);
    m.close_client();

    // The proxy comes back, asks for the byte after the last whole command, gets +CONTINUE.
    m.accept_client(10);
    handshake = serve_handshake(m, redis_psync_master("2.8.24", false));
    INFO("handshake after the drop:" << describe(handshake));
    CHECK(handshake.back() == Command{"PSYNC", kRunid28, std::to_string(stream.offset() + 1)});
    m.send("+CONTINUE\r\n");
    // The master goes on from there: the cut command whole, still in db 3 (no SELECT), more.
    stream.command(3, cut);
    stream.command(3, {"INCR", "k28:n"});
    stream.command(0, {"SET", "k28:after", "resumed"});
    m.send(stream.take());
    source.apply(stream.take_writes());
    wait_keyspace_equal(source.server, replica);
    wait_upstream_ack(m, stream.offset());

    s = proxy.status();
    CHECK(json_int(s, "/counters/upstream_partial_resyncs") == 1);
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(json_str(s, "/upstream/state") == "streaming");
    CHECK(json_int(s, "/upstream/offset") == static_cast<int64_t>(stream.offset()));
    CHECK(json_str(s, "/proxy/replid") == replid);
    CHECK(json_int(s, "/counters/sync_full") == sync_full);
    CHECK(replica_field(s, replica.port(), "state") == "online");
    CHECK(replica.log_count("Full resync from master") == 1);
    CHECK(replica.log_count("Connection with master lost") == 0);
    CHECK(replica.info_field("replication", "master_replid") == replid);
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: a scripted 4.0+ master: REPLCONF GETACK is answered at once and +CONTINUE <newid> is adopted for the next PSYNC") {
    Sandbox sandbox;
    Source source(sandbox);
    ScriptedMaster m;
    ProxyProcess proxy(sandbox, "proxy", m.port());
    proxy.start();
    m.accept_client();
    std::vector<Command> handshake = serve_handshake(m, redis_psync_master("4.0.14", true));
    INFO("handshake:" << describe(handshake));
    bool capa_psync2 = false;
    for (const auto& c : handshake)
        capa_psync2 |= named(c, "REPLCONF") && c.size() == 3 && upper(c[1]) == "CAPA" && upper(c[2]) == "PSYNC2";
    CHECK(capa_psync2);
    CHECK(handshake.back() == Command{"PSYNC", "?", "-1"});

    m.send("+FULLRESYNC " + kReplid4a + " 5000\r\n");
    ModernStream stream(5000);
    stream.command(0, {"SET", "k4:a", "1"});
    m.send_payload(source.rdb, 0, stream.take());
    source.apply(stream.take_writes());
    proxy.wait_snapshot();
    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    proxy.wait_replica_online(replica.port());
    wait_keyspace_equal(source.server, replica);
    const std::string replid = json_str(proxy.status(), "/proxy/replid");

    // GETACK between two periodic ACKs: the answer must come well before the next periodic one.
    for (int round = 0; round < 2; ++round) {
        wait_upstream_ack(m, stream.offset());
        try {  // drain ACKs already received, so that the next one read is a fresh periodic one
            while (true) m.read_command(0.05);
        } catch (const std::exception&) {
        }
        const std::vector<uint64_t> fresh = wait_upstream_ack(m, stream.offset(), 2);
        CHECK(fresh.size() == 1);
        const auto periodic = Clock::now();
        sleep_ms(200);
        stream.command(3, {"INCR", "k4:n"});
        std::string bytes = stream.take();
        const uint64_t before_getack = stream.offset();
        stream.raw(multibulk({"REPLCONF", "GETACK", "*"}));
        bytes += stream.take();
        m.send(bytes);
        Command answer;
        try {
            answer = m.read_command(0.45);
        } catch (const std::exception& e) {
            CHECK_MESSAGE(false, "REPLCONF GETACK * was not answered within 0.45 s (round " << round
                                                                                    << "): " << std::string(e.what()));
        }
        if (!answer.empty()) {
            CHECK_MESSAGE(seconds_since(periodic) < 0.75, "the ACK came late, as the periodic one would");
            REQUIRE_MESSAGE((named(answer, "REPLCONF") && answer.size() == 3 && upper(answer[1]) == "ACK"),
                            "answer to GETACK:" << describe({answer}));
            const uint64_t acked = std::stoull(answer[2]);
            // Redis answers with the offset before the GETACK command; after it is right too.
            CHECK_MESSAGE((acked == before_getack || acked == stream.offset()),
                          "ACK " << acked << " for GETACK at " << before_getack << "-" << stream.offset());
        }
        wait_upstream_ack(m, stream.offset());  // the GETACK's own bytes count in the offset
    }
    source.apply(stream.take_writes());
    wait_keyspace_equal(source.server, replica);
    const int64_t sync_full = json_int(proxy.status(), "/counters/sync_full");

    // The link drops; the master (restarted or failed over meanwhile) answers +CONTINUE <newid>.
    m.close_client();
    m.accept_client(10);
    handshake = serve_handshake(m, redis_psync_master("4.0.14", true));
    INFO("handshake after the first drop:" << describe(handshake));
    CHECK(handshake.back() == Command{"PSYNC", kReplid4a, std::to_string(stream.offset() + 1)});
    m.send("+CONTINUE " + kReplid4b + "\r\n");
    stream.command(3, {"SET", "k4:b", "after the first continue"});
    m.send(stream.take());
    source.apply(stream.take_writes());
    wait_keyspace_equal(source.server, replica);
    json s = proxy.status();
    CHECK(json_str(s, "/upstream/replid") == kReplid4b);
    CHECK(json_int(s, "/upstream/offset") == static_cast<int64_t>(stream.offset()));

    // Next drop: the PSYNC names the new id.
    m.close_client();
    m.accept_client(10);
    handshake = serve_handshake(m, redis_psync_master("4.0.14", true));
    INFO("handshake after the second drop:" << describe(handshake));
    CHECK(handshake.back() == Command{"PSYNC", kReplid4b, std::to_string(stream.offset() + 1)});
    m.send("+CONTINUE " + kReplid4b + "\r\n");
    stream.command(0, {"SET", "k4:c", "after the second continue"});
    m.send(stream.take());
    source.apply(stream.take_writes());
    wait_keyspace_equal(source.server, replica);

    s = proxy.status();
    CHECK(json_int(s, "/counters/upstream_partial_resyncs") == 2);
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(json_str(s, "/proxy/replid") == replid);
    CHECK(json_int(s, "/counters/sync_full") == sync_full);
    CHECK(replica.log_count("Full resync from master") == 1);
    CHECK(replica.log_count("Connection with master lost") == 0);
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: a Redis 7 master with PSYNC: after CLIENT KILL TYPE replica the proxy resumes with +CONTINUE and its replicas get no full resync") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master");  // PSYNC enabled
    master.start();
    {
        RedisClient c = master.client();
        for (int db : {0, 1, 5}) fill_dataset(c, db, 60);
    }
    ProxyProcess proxy(sandbox, "proxy", master.port());
    proxy.start();
    json s = proxy.wait_snapshot();
    CHECK(json_str(s, "/upstream/mode") == "psync");
    CHECK(json_str(s, "/upstream/version") == master.info_field("server", "redis_version"));
    CHECK(json_str(s, "/upstream/replid") == master.info_field("replication", "master_replid"));
    const std::string replid = json_str(s, "/proxy/replid");
    RedisServer r1(sandbox, "replica1", replica_options(proxy.port()));
    RedisServer r2(sandbox, "replica2", replica_options(proxy.port()));
    r1.start();
    r2.start();
    proxy.wait_replica_online(r1.port());
    proxy.wait_replica_online(r2.port());
    wait_keyspace_equal(master, r1);
    wait_keyspace_equal(master, r2);
    const int64_t sync_full = json_int(proxy.status(), "/counters/sync_full");

    BackgroundWriter writer(master.port(), {0, 1, 5});
    writer.wait_more_rounds(30);
    const Reply killed = master.client().command({"CLIENT", "KILL", "TYPE", "replica"});
    REQUIRE_MESSAGE(killed.integer == 1, "CLIENT KILL TYPE replica -> " << killed.describe());
    writer.wait_more_rounds(30);
    proxy.wait_status("the upstream link resumed with +CONTINUE", 20, [](const json& st, std::string&) {
        return json_int(st, "/counters/upstream_partial_resyncs") >= 1 && json_str(st, "/upstream/state") == "streaming";
    });
    writer.wait_more_rounds(30);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(master, r1);
    wait_keyspace_equal(master, r2);

    // The master: one full sync (the first), one partial; the proxy follows its offset and ACKs it.
    CHECK(master.info_int("stats", "sync_full") == 1);
    CHECK(master.info_int("stats", "sync_partial_ok") == 1);
    CHECK(master.log_count("Partial resynchronization request from") == 1);
    wait_until("the proxy's upstream offset and ACK at the master's offset", 10, [&](std::string& state) {
        const int64_t off = master.info_int("replication", "master_repl_offset");
        const json st = proxy.status();
        const Reply role = master.client().must({"ROLE"});
        const std::string ack = role.elements.at(2).elements.empty() ? "-" : role.elements[2].elements[0].elements.at(2).str;
        state = "master " + std::to_string(off) + ", proxy " + json_at(st, "/upstream/offset").dump() + ", ROLE ack " + ack;
        return json_int(st, "/upstream/offset") == off && ack == std::to_string(off);
    });
    CHECK(master.client().must({"WAIT", "1", "2000"}).integer == 1);

    s = proxy.status();
    CHECK(json_int(s, "/counters/upstream_partial_resyncs") == 1);
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(json_str(s, "/proxy/replid") == replid);
    CHECK(json_int(s, "/counters/sync_full") == sync_full);
    CHECK(json_int(s, "/counters/sync_partial_ok") == 0);
    for (RedisServer* r : {&r1, &r2}) {
        CHECK(r->log_count("Full resync from master") == 1);
        CHECK(r->log_count("Connection with master lost") == 0);
        CHECK(r->info_field("replication", "master_link_status") == "up");
        CHECK(r->info_field("replication", "master_replid") == replid);
    }
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: a SYNC-only Redis 7 master: auto mode falls back to SYNC on the same link and a lost link starts a new lineage") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient c = master.client();
        for (int db : {0, 1}) fill_dataset(c, db, 40);
    }
    const int64_t connections_before = master.info_int("stats", "total_connections_received");
    ProxyProcess proxy(sandbox, "proxy", master.port());
    proxy.start();
    json s = proxy.wait_snapshot();
    // The refused PSYNC and the SYNC came on one connection (the INFO below is one more).
    CHECK(master.info_int("stats", "total_connections_received") == connections_before + 2);
    CHECK(master.info("errorstats").find("errorstat_ERR:count=1") != std::string::npos);
    CHECK(json_str(s, "/upstream/mode") == "sync");
    CHECK(json_str(s, "/upstream/version") == master.info_field("server", "redis_version"));
    CHECK(json_at(s, "/upstream/offset").is_null());
    const std::string old_replid = json_str(s, "/proxy/replid");
    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    proxy.wait_replica_online(replica.port());
    wait_keyspace_equal(master, replica);

    const Reply killed = master.client().command({"CLIENT", "KILL", "TYPE", "replica"});
    REQUIRE_MESSAGE(killed.integer == 1, "CLIENT KILL TYPE replica -> " << killed.describe());
    {
        RedisClient c = master.client();
        write_burst(c, {0, 1}, 1);
    }
    s = proxy.wait_status("a new lineage after the lost SYNC link", 30, [&](const json& st, std::string&) {
        return json_int(st, "/upstream/sync_count") == 2 && json_str(st, "/proxy/replid") != old_replid &&
               json_str(st, "/upstream/state") == "streaming";
    });
    CHECK(json_int(s, "/counters/upstream_partial_resyncs") == 0);
    wait_until("the replica to follow the new lineage", 30, [&] {
        return replica.info_field("replication", "master_replid") == json_str(s, "/proxy/replid");
    });
    wait_keyspace_equal(master, replica);
    CHECK(master.info_int("stats", "sync_full") == 2);
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: --upstream-mode sync sends only SYNC and no ACK and a master refusing INFO leaves the version empty") {
    Sandbox sandbox;
    Source source(sandbox);
    ScriptedMaster m;
    ProxyOptions options;
    options.extra_args = {"--upstream-mode", "sync"};
    ProxyProcess proxy(sandbox, "proxy", m.port(), options);
    proxy.start();
    m.accept_client();
    // A 4.0-like master that could do PSYNC, with INFO renamed away.
    const LegacyReplier psync_master = redis_psync_master("4.0.14", true);
    const std::vector<Command> handshake = serve_handshake(m, [&](const Command& cmd) -> std::optional<std::string> {
        if (named(cmd, "INFO")) return "-ERR unknown command 'INFO'\r\n";
        return psync_master(cmd);
    });
    INFO("handshake:" << describe(handshake));
    CHECK(named(handshake.back(), "SYNC"));
    for (const auto& cmd : handshake) {
        CHECK_FALSE(named(cmd, "PSYNC"));
        CHECK_FALSE((named(cmd, "REPLCONF") && cmd.size() >= 2 && upper(cmd[1]) == "CAPA"));
    }
    LegacyStream stream;  // what a 4.0 master sends a SYNC replica: no +FULLRESYNC line
    stream.command({"SET", "mode:a", "1"});
    m.send_payload(source.rdb, 1, stream.take_bytes());
    json s = proxy.wait_snapshot();
    CHECK(json_str(s, "/upstream/mode") == "sync");
    CHECK(json_str(s, "/upstream/version") == "");
    stream.select(3);
    stream.command({"INCR", "mode:n"});
    m.send(stream.take_bytes());
    source.apply(stream.take_writes());
    const std::string upstream_bytes = m.received_bytes(1.5);
    CHECK_MESSAGE(upstream_bytes.empty(), "the proxy sent upstream on a SYNC link: " << upstream_bytes.substr(0, 200));
    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    wait_keyspace_equal(source.server, replica);
    check_clean_shutdown(proxy);
}

TEST_CASE("compat: --upstream-mode psync never falls back to SYNC: a refused PSYNC closes the link and is retried") {
    Sandbox sandbox;
    ScriptedMaster m;
    ProxyOptions options;
    options.extra_args = {"--upstream-mode", "psync"};
    ProxyProcess proxy(sandbox, "proxy", m.port(), options);
    proxy.start();
    for (int attempt = 0; attempt < 2; ++attempt) {
        m.accept_client(10);
        const std::vector<Command> handshake = serve_handshake(m, [](const Command& cmd) -> std::optional<std::string> {
            if (named(cmd, "PSYNC")) return std::nullopt;  // answered below, as 2.6 would
            return redis26_reply(cmd);
        });
        INFO("handshake:" << describe(handshake));
        CHECK(handshake.back() == Command{"PSYNC", "?", "-1"});
        m.send("-ERR unknown command 'PSYNC'\r\n");
        const std::string after = m.received_bytes(5);  // returns once the proxy closes
        CHECK_MESSAGE(after.find("SYNC") == std::string::npos, "sent after the refused PSYNC: " << after.substr(0, 200));
        CHECK_MESSAGE(m.wait_client_closed(0.1), "the proxy kept the link open after the refused PSYNC");
    }
    json s = proxy.status();
    CHECK(json_at(s, "/snapshot").is_null());
    CHECK(json_str(s, "/upstream/state") != "streaming");
    CHECK_MESSAGE(json_str(s, "/upstream/last_error").find("PSYNC") != std::string::npos, s.dump());
    check_clean_shutdown(proxy);
}
