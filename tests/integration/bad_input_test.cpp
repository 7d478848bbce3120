// Bad input on the replica port: limits on everything a peer sends (inline line, multibulk
// count, bulk length, bytes buffered for one request, connections, handshake time), and
// PSYNC / REPLCONF / AUTH with missing, non-numeric, negative or huge arguments, compared
// with what a real Redis 7 answers. Past a limit: a RESP error, the connection closed, one
// log line, and nothing else disturbed (a replica online and an idle client go on).
#include <doctest/doctest.h>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// Sends `bytes` on a new connection and returns the first reply line and whether the proxy
// then closed the connection (within timeout_s).
struct Outcome {
    std::string reply;
    bool closed = false;
};
Outcome send_and_watch(int port, const std::string& bytes, double timeout_s = 5) {
    ScriptedReplica conn(port);
    Outcome out;
    try {
        conn.send(bytes);
    } catch (const std::exception&) {
        // the proxy may close before it has read everything: the reply must still be there
    }
    try {
        out.reply = conn.read_line(timeout_s);
    } catch (const std::exception& e) {
        out.reply = std::string("(no reply: ") + e.what() + ")";
    }
    out.closed = conn.wait_closed(timeout_s);
    return out;
}

// The replies (raw lines) a server sends to `cmd` followed by PING, up to the PONG.
std::string replies_before_pong(int port, const Command& cmd) {
    ScriptedReplica conn(port);
    conn.send(multibulk(cmd) + multibulk({"PING"}));
    std::string out;
    for (int i = 0; i < 4; ++i) {
        std::string line = conn.read_line(5);
        if (line == "+PONG") return out;
        out += line + "\n";
    }
    return out + "(no PONG)";
}

ProxyOptions proxy_args(std::vector<std::string> args) {
    ProxyOptions o;
    o.extra_args = std::move(args);
    return o;
}

// The first reply line to `cmd` alone on a new connection ("(closed)" if none comes).
std::string first_reply_line(int port, const Command& cmd) {
    ScriptedReplica conn(port);
    conn.send(multibulk(cmd));
    try {
        return conn.read_line(5);
    } catch (const std::exception&) {
        return "(closed)";
    }
}

// "+", "-" or "" (no reply): what a client acts on.
std::string kind(const std::string& replies) { return replies.empty() ? "" : replies.substr(0, 1); }

}  // namespace

TEST_CASE("bad input: requests past a limit get a protocol error, are closed, logged once, and disturb nothing else") {
    ProxiedCluster c;
    c.start(1);
    ScriptedReplica idle(c.proxy->port());  // connected before the bad clients; used after them
    const std::string log = c.proxy->log_path();

    struct Case {
        std::string what;
        std::string bytes;
        std::string error;  // the reply line, and what the log line says
    };
    std::string too_big;  // 1 MB+ for one request, in arguments that are each within limits
    too_big = "*20\r\n";
    for (int i = 0; i < 17; ++i) too_big += "$60000\r\n" + std::string(60000, 'x') + "\r\n";
    too_big += "$60000\r\n";
    const std::vector<Case> cases = {
        {"an inline line of 64 KB + 1", std::string(64 * 1024 + 1, 'a'), "too big inline request"},
        {"1025 arguments", "*1025\r\n", "invalid multibulk length"},
        {"a bulk of 64 KB + 1", "*2\r\n$4\r\nAUTH\r\n$65537\r\n", "invalid bulk length"},
        {"1 MB buffered for one request", too_big, "too big request"},
        {"a huge multibulk count", "*99999999999999999999\r\n", "invalid multibulk length"},
        {"a negative bulk length", "*1\r\n$-5\r\n", "invalid bulk length"},
        {"garbage instead of a bulk", "*1\r\nPING\r\n", "expected '$'"},
    };
    for (const auto& k : cases) {
        CAPTURE(k.what);
        const int lines_before = count_log_lines(log, k.error, true);
        const Outcome o = send_and_watch(c.proxy->port(), k.bytes);
        CHECK_MESSAGE(o.reply.rfind("-ERR Protocol error: ", 0) == 0, o.reply);
        CHECK_MESSAGE(o.reply.find(k.error) != std::string::npos, o.reply);
        CHECK_MESSAGE(o.closed, "the connection stayed open after: " << o.reply);
        wait_until("the log line", 5, [&] { return count_log_lines(log, k.error, true) > lines_before; });
        CHECK(count_log_lines(log, k.error, true) == lines_before + 1);
    }
    // Requests just within the limits are fine.
    {
        ScriptedReplica ok(c.proxy->port());
        ok.send(multibulk({"PING", std::string(64 * 1024, 'p')}));
        CHECK(ok.read_line(5) == "$65536");
        CHECK(ok.read_line(5) == std::string(64 * 1024, 'p'));
        ok.send("PING " + std::string(60000, 'q') + "\r\n");
        CHECK(ok.read_line(5) == "$60000");
    }

    // Nothing else was disturbed.
    idle.send(multibulk({"PING"}));
    CHECK(idle.read_line(5) == "+PONG");
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.wait_replicas_equal();
    CHECK(c.replicas[0]->log_count("Connection with master lost") == 0);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("bad input: --max-clients: the connection past the limit is refused with an error and counted") {
    ProxiedCluster c;
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(),
                                             proxy_args({"--max-clients", "5"}));
    c.start(1);  // the replica is one of the 5
    std::vector<std::unique_ptr<ScriptedReplica>> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(std::make_unique<ScriptedReplica>(c.proxy->port()));
        clients.back()->send("PING\r\n");
        CHECK(clients.back()->read_line(5) == "+PONG");
    }
    const int64_t rejected_before = json_int(c.proxy->status(), "/counters/rejected_connections");
    {
        ScriptedReplica extra(c.proxy->port());
        CHECK(extra.read_line(5) == "-ERR max number of clients reached");
        CHECK(extra.wait_closed(5));
    }
    CHECK(json_int(c.proxy->status(), "/counters/rejected_connections") == rejected_before + 1);
    CHECK(count_log_lines(c.proxy->log_path(), "max-clients", true) == 1);
    // The others are untouched; once one leaves, a newcomer gets in.
    for (auto& cl : clients) {
        cl->send("PING\r\n");
        CHECK(cl->read_line(5) == "+PONG");
    }
    clients.pop_back();
    wait_until("a free slot", 5, [&] {
        ScriptedReplica next(c.proxy->port());
        next.send("PING\r\n");
        try {
            return next.read_line(2) == "+PONG";
        } catch (const std::exception&) {
            return false;
        }
    });
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.wait_replicas_equal();
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("bad input: --handshake-timeout closes a connection that never becomes a replica, not the replicas") {
    ProxiedCluster c;
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(),
                                             proxy_args({"--handshake-timeout", "1"}));
    c.start(1);
    ScriptedReplica silent(c.proxy->port());
    ScriptedReplica chatty(c.proxy->port());  // keeps talking, never sends PSYNC or SYNC
    const auto start = Clock::now();
    bool chatty_closed = false;
    while (seconds_since(start) < 4 && !chatty_closed) {
        try {
            chatty.send("PING\r\n");
            chatty.read_line(1);
        } catch (const std::exception&) {
            chatty_closed = true;
        }
        sleep_ms(200);
    }
    CHECK_MESSAGE(chatty_closed, "a client that never sent PSYNC was kept for 4 s");
    CHECK(silent.wait_closed(3));
    CHECK(seconds_since(start) >= 0.9);
    const std::string log = c.proxy->log_path();
    for (auto* conn : {&silent, &chatty}) {
        const std::string addr = "127.0.0.1:" + std::to_string(conn->local_port());
        const std::string lines = grep_log(log, addr);
        CHECK_MESSAGE((lines.find("handshake") != std::string::npos || lines.find("timeout") != std::string::npos ||
                       lines.find("timed out") != std::string::npos),
                      "no log line about closing " << addr << ":\n" << lines);
    }
    // The replica, online for longer than the timeout, stays.
    sleep_ms(1500);
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.wait_replicas_equal();
    CHECK(c.replicas[0]->log_count("Connection with master lost") == 0);
    CHECK(replica_field(c.proxy->status(), c.replicas[0]->port(), "state") == "online");
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("bad input: PSYNC with bad arguments gets a full resync or Redis's error, never +CONTINUE") {
    ProxiedCluster c;
    c.start(0);
    RedisServer reference(c.sandbox, "reference");  // a plain Redis 7, for its answers
    reference.start();
    const json s = c.proxy->status();
    const std::string replid = json_str(s, "/proxy/replid");
    const int64_t offset = json_int(s, "/proxy/offset");
    const int64_t snap = json_int(s, "/snapshot/offset");
    const std::string unknown = "0123456789abcdef0123456789abcdef01234567";

    // Wrong arity: Redis's answer.
    for (const Command& cmd : std::vector<Command>{{"PSYNC"}, {"PSYNC", "?"}, {"PSYNC", replid}}) {
        CAPTURE(cmd.size());
        CHECK(replies_before_pong(c.proxy->port(), cmd) == "-ERR wrong number of arguments for 'psync' command\n");
    }

    auto psync_reply = [&](const std::string& id, const std::string& off) {
        ScriptedReplica conn(c.proxy->port());
        conn.send(multibulk({"REPLCONF", "capa", "eof", "capa", "psync2"}));
        REQUIRE(conn.read_line(5) == "+OK");
        conn.send(multibulk({"PSYNC", id, off}));
        return conn.read_line(5);
    };
    const std::vector<std::pair<std::string, std::string>> bad = {
        {replid, "abc"},
        {replid, ""},
        {replid, "-5"},
        {replid, "-1"},
        {replid, "99999999999999999999"},
        {replid, "18446744073709551617"},
        {replid, "9223372036854775807"},
        {replid, std::to_string(offset + 2)},
        {replid, std::to_string(offset + 1000000)},
        {replid, std::to_string(snap)},  // just before the first byte after the snapshot
        {replid, "0"},
        {replid, " " + std::to_string(offset)},
        {replid, std::to_string(offset) + "x"},
        {replid, "0x10"},
        {unknown, std::to_string(offset)},
        {replid.substr(0, 39), std::to_string(offset)},
        {replid + "0", std::to_string(offset)},
        {"?", std::to_string(offset)},
        {"", std::to_string(offset)},
    };
    for (const auto& [id, off] : bad) {
        CAPTURE(id);
        CAPTURE(off);
        const std::string got = psync_reply(id, off);
        const json now = c.proxy->status();
        if (json_int(now, "/proxy/offset") != offset && off == std::to_string(offset + 2)) continue;  // log grew meanwhile
        if (got.rfind("+FULLRESYNC " + replid + " " + std::to_string(snap), 0) == 0) continue;
        const std::string redis = first_reply_line(reference.port(), {"PSYNC", id, off});
        CHECK_MESSAGE(got == redis, "PSYNC " << id << " " << off << " -> " << got << " (Redis: " << redis << ")");
    }
    // The sanity check of the above: what is held gets +CONTINUE.
    CHECK(psync_reply(replid, std::to_string(offset + 1)) == "+CONTINUE " + replid);
    CHECK(psync_reply(replid, std::to_string(snap + 1)) == "+CONTINUE " + replid);
    const json after = c.proxy->status();
    CHECK(json_int(after, "/counters/sync_partial_ok") == 2);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("bad input: REPLCONF and AUTH with missing, non-numeric, negative or huge arguments answer as Redis does") {
    ProxiedCluster c;
    c.start(0);
    RedisServer reference(c.sandbox, "reference");
    reference.start();
    const std::string huge = "99999999999999999999";
    const std::vector<Command> cases = {
        {"REPLCONF"},
        {"REPLCONF", "listening-port"},
        {"REPLCONF", "listening-port", "abc"},
        {"REPLCONF", "listening-port", huge},
        {"REPLCONF", "listening-port", ""},
        {"REPLCONF", "capa"},
        {"REPLCONF", "capa", "psync2", "capa"},
        {"REPLCONF", "rdb-only", "2"},
        {"REPLCONF", "rdb-only", "-1"},
        {"REPLCONF", "rdb-only", "x"},
        {"REPLCONF", "ack", "abc"},
        {"REPLCONF", "ack", "-5"},
        {"REPLCONF", "ack", huge},
        {"REPLCONF", "ack"},
        {"REPLCONF", "getack"},
        {"REPLCONF", "getack", "*"},
        {"AUTH"},
        {"AUTH", "a", "b", "c"},
        {"AUTH", "x"},
        {"AUTH", "x", "y"},
        {"AUTH", "default", "y"},
        {"AUTH", ""},
    };
    for (const auto& cmd : cases) {
        std::string shown;
        for (const auto& a : cmd) shown += " " + a;
        CAPTURE(shown);
        const std::string redis = replies_before_pong(reference.port(), cmd);
        const std::string proxy = replies_before_pong(c.proxy->port(), cmd);
        CHECK_MESSAGE(kind(proxy) == kind(redis), "proxy: '" << proxy << "' Redis: '" << redis << "'");
    }
    // Stricter than Redis, on purpose or not, but never a crash: a port out of range.
    for (const std::string port : {"-1", "70000"}) {
        const std::string proxy = replies_before_pong(c.proxy->port(), {"REPLCONF", "listening-port", port});
        CHECK_MESSAGE((proxy == "+OK\n" || proxy.rfind("-ERR", 0) == 0), proxy);
    }
    // The proxy is still fine, and so is its status.
    CHECK(replies_before_pong(c.proxy->port(), {"REPLCONF", "listening-port", "6379"}) == "+OK\n");
    CHECK(json_str(c.proxy->status(), "/upstream/state") == "streaming");
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("bad input: an online replica's REPLCONF ACK with bad offsets does not corrupt its entry in /status") {
    ProxiedCluster c;
    c.start(0);
    ScriptedReplica r(c.proxy->port());
    r.send(multibulk({"REPLCONF", "listening-port", "7777"}) + multibulk({"PSYNC", "?", "-1"}));
    CHECK(r.read_line(5) == "+OK");
    const std::string full = r.read_line(5);
    REQUIRE(full.rfind("+FULLRESYNC ", 0) == 0);
    r.read_payload(15);
    c.proxy->wait_replica_online(7777);
    const int64_t offset = json_int(c.proxy->status(), "/proxy/offset");
    r.send(multibulk({"REPLCONF", "ACK", std::to_string(offset)}));
    for (const std::string bad : {"abc", "-5", "-9223372036854775808", "99999999999999999999", ""}) {
        r.send(multibulk({"REPLCONF", "ACK", bad}));
    }
    sleep_ms(300);
    const json s = c.proxy->status();
    const json entry = find_replica(s, 7777);
    REQUIRE(entry.is_object());
    CHECK(entry["state"] == "online");
    CHECK_MESSAGE(json_int(entry, "/acked_offset") == offset, entry.dump());
    CHECK(json_int(entry, "/lag_bytes") >= 0);
    CHECK(json_int(entry, "/lag_bytes") <= json_int(s, "/proxy/offset"));
    CHECK_FALSE(r.closed());
    check_clean_shutdown(*c.proxy);
}
