// Bytes from peers that are not text: a master whose error replies, +FULLRESYNC / +CONTINUE
// replication IDs or INFO redis_version hold bytes that are not UTF-8, and a replica sending
// a command name and PSYNC arguments that are not either. The proxy keeps peer strings
// ASCII-safe from where they enter (bytes outside printable ASCII as \xHH, see
// protocol/text.h): GET /status (the Kubernetes liveness probe) answers 200 with valid JSON
// and shows the bytes as \xHH, the process stays alive, a replication ID that is not 40 hex
// digits is never adopted (the link is then not resumable: the next PSYNC is "? -1"), and its
// log holds only printable ASCII lines.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "tests/support/compat.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/legacy_rdb.h"
#include "tests/support/proxy.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"

using namespace psync::test;
using nlohmann::json;

namespace {

bool named(const Command& cmd, const std::string& name) { return !cmd.empty() && upper(cmd[0]) == name; }

// 40 bytes that pass a length check but are not hex: every one >= 0x80 (and not UTF-8).
const std::string kHostileReplid = std::string(20, '\xe9') + std::string(20, '\xff');
const std::string kGoodReplid = "3333333333333333333333333333333333333333";

// Answers the proxy's handshake with `replier` until it sends SYNC, or a PSYNC the replier
// leaves unanswered (nullopt); returns every command received, that one last.
std::vector<Command> serve_handshake(ScriptedMaster& m, const LegacyReplier& replier, double timeout_s = 15) {
    std::vector<Command> received;
    const auto start = Clock::now();
    while (true) {
        const double left = timeout_s - seconds_since(start);
        if (left <= 0) throw std::runtime_error("scripted master: no PSYNC or SYNC within the time limit");
        Command cmd = m.read_command(left);
        received.push_back(cmd);
        if (named(cmd, "SYNC")) return received;
        auto reply = replier(cmd);
        if (!reply && named(cmd, "PSYNC")) return received;
        if (reply) m.send(*reply);
    }
}

// A 4.0-like master: PSYNC is left to the test; REPLCONF capa refused with a Latin-1 byte in
// the error (the proxy ignores that error, and logs it at debug level).
std::optional<std::string> psync_master(const Command& cmd) {
    const std::string name = upper(cmd.at(0));
    if (name == "INFO") return info_bulk("# Server\r\nredis_version:4.0.14\r\nredis_mode:standalone\r\n");
    if (name == "REPLCONF" && cmd.size() >= 2 && upper(cmd[1]) == "CAPA")
        return std::string("-ERR Unrecognized REPLCONF option: capa \xe9t\xe9\r\n");
    if (name == "PSYNC") return std::nullopt;
    return redis26_reply(cmd);
}

// GET /status as the liveness probe does it: it must answer 200 with a body that is JSON
// (nlohmann's parser rejects a string that is not UTF-8).
json probe_status(ProxyProcess& proxy) {
    const HttpResponse r = http_get(proxy.status_port(), "/status");
    REQUIRE_MESSAGE(r.status == 200, "GET /status -> " << r.status << ": " << r.body);
    json j;
    try {
        j = json::parse(r.body);
    } catch (const json::exception& e) {
        FAIL("GET /status is not valid JSON (" << e.what() << "): " << r.body);
    }
    return j;
}

// The first line of the proxy's log holding a byte outside printable ASCII ("" if none).
std::string first_non_ascii_log_line(const std::string& path) {
    std::ifstream f(path);
    std::string line;
    while (std::getline(f, line)) {
        for (char c : line) {
            if (c < 0x20 || c > 0x7e) return line;
        }
    }
    return "";
}

std::string small_rdb() {
    Rdb2Builder rdb;
    rdb.string("k", "v");
    return rdb.finish();
}

void check_alive_and_clean(ProxyProcess& proxy) {
    CHECK_MESSAGE(proxy.running(), "the proxy died");
    const std::string bad = first_non_ascii_log_line(proxy.log_path());
    CHECK_MESSAGE(bad.empty(), "a log line with bytes outside printable ASCII: " << bad);
    // /metrics renders from the same state.
    CHECK(http_get(proxy.status_port(), "/metrics").status == 200);
    check_clean_shutdown(proxy);
}

}  // namespace

TEST_CASE("peer text: a master refusing PSYNC and SYNC with a Latin-1 byte: GET /status answers valid JSON and shows it as \\xe9") {
    Sandbox sandbox;
    ScriptedMaster m;
    ProxyProcess proxy(sandbox, "proxy", m.port());
    proxy.start();
    const std::string log = proxy.log_path();
    for (int attempt = 1; attempt <= 2; ++attempt) {
        CAPTURE(attempt);
        m.accept_client();
        // Auto mode: PSYNC refused (as by a 2.6 master, with a Latin-1 byte), SYNC on the same link.
        const std::vector<Command> handshake = serve_handshake(m, [](const Command& cmd) -> std::optional<std::string> {
            if (named(cmd, "PSYNC")) return std::string("-ERR unknown command 'PSYNC' caf\xe9\r\n");
            return redis26_reply(cmd);
        });
        REQUIRE(named(handshake.back(), "SYNC"));
        m.send("\n-ERR caf\xe9 closed\r\n");
        CHECK_MESSAGE(m.wait_client_closed(10), "the proxy kept the link after the master refused SYNC");
        const json s = proxy.wait_status("the refusal in /status", 10, [](const json& st, std::string&) {
            return json_str(st, "/upstream/last_error").find("closed") != std::string::npos;
        });
        CHECK(json_str(s, "/upstream/last_error") == "the master refused SYNC: ERR caf\\xe9 closed");
        CHECK(json_at(s, "/upstream/link_up") == false);
        probe_status(proxy);  // and again, as the probe does every few seconds
        CHECK(count_log_lines(log, "the master refused SYNC: ERR caf\\xe9 closed", true) == attempt);
        CHECK(count_log_lines(log, "does not take PSYNC (ERR unknown command 'PSYNC' caf\\xe9)") == attempt);
    }
    check_alive_and_clean(proxy);
}

TEST_CASE("peer text: --upstream-mode psync: a PSYNC refused with a Latin-1 byte is shown as \\xe9 in /status") {
    Sandbox sandbox;
    ScriptedMaster m;
    ProxyOptions options;
    options.extra_args = {"--upstream-mode", "psync"};
    ProxyProcess proxy(sandbox, "proxy", m.port(), options);
    proxy.start();
    m.accept_client();
    const std::vector<Command> handshake = serve_handshake(m, psync_master);
    REQUIRE(named(handshake.back(), "PSYNC"));
    m.send("-ERR caf\xe9 closed\r\n");
    CHECK(m.wait_client_closed(10));
    const json s = proxy.wait_status("the refusal in /status", 10, [](const json& st, std::string&) {
        return !json_str(st, "/upstream/last_error").empty();
    });
    CHECK(json_str(s, "/upstream/last_error") == "the master refused PSYNC (--upstream-mode psync): ERR caf\\xe9 closed");
    probe_status(proxy);
    check_alive_and_clean(proxy);
}

TEST_CASE("peer text: +FULLRESYNC and +CONTINUE with a replid of bytes >= 0x80: never adopted, /status stays JSON, the next PSYNC is a full one") {
    Sandbox sandbox;
    ScriptedMaster m;
    ProxyProcess proxy(sandbox, "proxy", m.port());
    proxy.start();
    const std::string log = proxy.log_path();
    const std::string rdb = small_rdb();

    // 1. The bad replid, then garbage where the payload should start.
    m.accept_client();
    std::vector<Command> handshake = serve_handshake(m, psync_master);
    REQUIRE(handshake.back() == Command{"PSYNC", "?", "-1"});
    m.send("+FULLRESYNC " + kHostileReplid + " 100\r\n\x01garb\xe9ge\r\n");
    CHECK(m.wait_client_closed(10));
    json s = proxy.wait_status("the framing error in /status", 10, [](const json& st, std::string&) {
        return json_str(st, "/upstream/last_error").find("unexpected") != std::string::npos;
    });
    CHECK_MESSAGE(json_str(s, "/upstream/last_error").find("'\\x01'") != std::string::npos, s.dump());
    CHECK(json_str(s, "/upstream/replid") == "");
    CHECK(count_log_lines(log, "is not 40 hex digits", true) == 1);

    // 2. The bad replid and a whole payload: a snapshot, a stream, but no resumable link.
    m.accept_client();
    handshake = serve_handshake(m, psync_master);
    REQUIRE(handshake.back() == Command{"PSYNC", "?", "-1"});
    m.send("+FULLRESYNC " + kHostileReplid + " 100\r\n");
    m.send_payload(rdb, 1, multibulk({"SET", "a", "1"}));
    s = proxy.wait_snapshot();
    CHECK(json_str(s, "/upstream/mode") == "psync");
    CHECK(json_str(s, "/upstream/replid") == "");
    CHECK(count_log_lines(log, "is not 40 hex digits", true) == 2);
    probe_status(proxy);
    m.close_client();

    // 3. Not resumed with the bad id: a full resync, now with a good one.
    m.accept_client();
    handshake = serve_handshake(m, psync_master);
    CHECK(handshake.back() == Command{"PSYNC", "?", "-1"});
    m.send("+FULLRESYNC " + kGoodReplid + " 5000\r\n");
    const std::string cmd = multibulk({"SET", "b", "2"});
    m.send_payload(rdb, 0, cmd);
    s = proxy.wait_status("the good replid adopted and the stream read", 30, [&](const json& st, std::string&) {
        return json_int(st, "/upstream/sync_count") == 2 && json_str(st, "/upstream/replid") == kGoodReplid &&
               json_at(st, "/upstream/offset") == 5000 + cmd.size();
    });
    m.close_client();

    // 4. Resumed, but the master names a new id that is not hex: the stream goes on, the id
    //    is not adopted, the link is no longer resumable.
    m.accept_client();
    handshake = serve_handshake(m, psync_master);
    CHECK(handshake.back() == Command{"PSYNC", kGoodReplid, std::to_string(5000 + cmd.size() + 1)});
    m.send("+CONTINUE " + kHostileReplid + "\r\n" + multibulk({"SET", "c", "3"}));
    s = proxy.wait_status("the link resumed", 10, [](const json& st, std::string&) {
        return json_int(st, "/counters/upstream_partial_resyncs") == 1 && json_str(st, "/upstream/state") == "streaming";
    });
    CHECK(json_str(s, "/upstream/replid") == "");
    CHECK(json_int(s, "/upstream/sync_count") == 2);
    CHECK(count_log_lines(log, "is not 40 hex digits", true) == 3);
    probe_status(proxy);
    m.close_client();

    // 5. Hence a full resync again.
    m.accept_client();
    handshake = serve_handshake(m, psync_master);
    CHECK(handshake.back() == Command{"PSYNC", "?", "-1"});
    check_alive_and_clean(proxy);
}

TEST_CASE("peer text: a master whose INFO redis_version is not UTF-8: /status shows it as \\xHH") {
    Sandbox sandbox;
    ScriptedMaster m;
    ProxyProcess proxy(sandbox, "proxy", m.port());
    proxy.start();
    m.accept_client();
    const std::vector<Command> handshake = serve_handshake(m, [](const Command& cmd) -> std::optional<std::string> {
        if (named(cmd, "INFO"))
            return info_bulk(std::string("# Server\r\nredis_version:2.6.\xff\xc3\x28\r\nredis_mode:standalone\r\n"));
        return redis26_reply(cmd);
    });
    REQUIRE(named(handshake.back(), "SYNC"));
    const json s = probe_status(proxy);
    CHECK(json_str(s, "/upstream/version") == "2.6.\\xff\\xc3(");
    CHECK(json_str(s, "/upstream/state") == "waiting_payload");
    CHECK(count_log_lines(proxy.log_path(), "the master is Redis 2.6.\\xff\\xc3(") == 1);
    check_alive_and_clean(proxy);
}

TEST_CASE("peer text: a replica's command name and PSYNC arguments that are not UTF-8 come back and are logged as \\xHH") {
    Sandbox sandbox;
    ScriptedMaster m;
    ProxyProcess proxy(sandbox, "proxy", m.port());
    proxy.start();
    m.accept_client();
    serve_handshake(m, psync_master);
    m.send("+FULLRESYNC " + kGoodReplid + " 100\r\n");
    m.send_payload(small_rdb(), 0);
    const json ready = proxy.wait_snapshot();
    const std::string replid = json_str(ready, "/proxy/replid");
    // Not about peer text: /status says what the log keeps.
    CHECK(json_int(ready, "/log/backlog_size_configured") == 256 << 20);
    CHECK(json_str(ready, "/log/retention").find("--backlog-size (256.0 MB) before the snapshot") != std::string::npos);

    {
        ScriptedReplica r(proxy.port());
        r.send(multibulk({std::string("caf\xe9\x00!", 6)}));
        CHECK(r.read_line().rfind("-ERR unknown command 'caf\\xe9\\x00!': this is psync-proxy", 0) == 0);
        r.send(multibulk({"PING"}));
        CHECK(r.read_line() == "+PONG");
    }
    // A PSYNC naming an id that is not this lineage's, and one with an offset that is not a number.
    for (const Command& psync : {Command{"PSYNC", kHostileReplid, "5"}, Command{"PSYNC", replid, "1\xe9"}}) {
        ScriptedReplica r(proxy.port());
        r.send(multibulk(psync));
        CHECK(r.read_line().rfind("+FULLRESYNC " + replid + " ", 0) == 0);
    }
    wait_until("the two PSYNCs logged", 10, [&] {
        return count_log_lines(proxy.log_path(), "asked for a partial resync") == 2;
    });
    CHECK(count_log_lines(proxy.log_path(), "replid \\xe9\\xe9") == 1);
    CHECK(count_log_lines(proxy.log_path(), "from offset 1\\xe9,") == 1);
    probe_status(proxy);
    check_alive_and_clean(proxy);
}
