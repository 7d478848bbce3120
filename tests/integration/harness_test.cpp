// Self-checks of the test harness that need no proxy: servers, keyspace comparison,
// the scripted legacy master, the HTTP helper, process control.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <csignal>
#include <thread>

#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/process.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;

TEST_CASE("harness: a Redis 7 replica attached directly to the SYNC-only master converges") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();

    // The master refuses PSYNC like a 2.6 master, and keeps the connection usable.
    RedisClient m = master.client();
    Reply psync = m.command({"PSYNC", "?", "-1"});
    CHECK(psync.is_error());
    CHECK(psync.str.find("unknown command") != std::string::npos);
    CHECK(m.command({"PING"}).str == "PONG");

    for (int db : {0, 1, 5}) fill_dataset(m, db, 100);
    RedisServer replica(sandbox, "replica", replica_options(master.port()));
    replica.start();
    wait_keyspace_equal(master, replica);
    write_burst(m, {0, 1, 5}, 1);
    wait_keyspace_equal(master, replica);

    Keyspace ks = master.keyspace();
    CHECK(ks.size() > 300);
    CHECK(keyspace_summary(ks).find("db5=") != std::string::npos);
    // SYNC counts as a full sync on Redis 7: what the proxy scenarios rely on.
    CHECK(master.info_int("stats", "sync_full") == 1);
    CHECK(replica.info_field("replication", "master_link_status") == "up");
}

TEST_CASE("harness: keyspace diff reports missing keys and changed values and TTL differences") {
    Keyspace a;
    a[{0, "s"}] = {"string", "\"v\"", false, 0};
    a[{1, "t"}] = {"string", "\"x\"", true, 1'000'000};
    a[{1, "u"}] = {"hash", "{\"f\": \"1\"}", true, 2'000'000};
    a[{5, "gone"}] = {"list", "[\"a\"]", false, 0};

    Keyspace b = a;
    CHECK(diff_keyspaces(a, b, "A", "B").empty());
    b[{1, "t"}].expire_at_ms += 3000;  // within tolerance
    CHECK(diff_keyspaces(a, b, "A", "B").empty());

    b[{0, "s"}].value = "\"w\"";
    b[{1, "t"}].expire_at_ms += 10'000;
    b[{1, "u"}].has_ttl = false;
    b.erase({5, "gone"});
    b[{2, "extra"}] = {"set", "{}", false, 0};
    std::string d = diff_keyspaces(a, b, "A", "B");
    CHECK(d.find("5 differing keys") != std::string::npos);
    CHECK(d.find("db 0 key \"s\"") != std::string::npos);
    CHECK(d.find("expire times differ") != std::string::npos);
    CHECK(d.find("TTL on A but not on B") != std::string::npos);
    CHECK(d.find("missing on B") != std::string::npos);
    CHECK(d.find("only on B") != std::string::npos);
}

TEST_CASE("harness: the scripted 2.6 master feeds a Redis 7 replica directly") {
    Sandbox sandbox;
    RedisServer source(sandbox, "source");
    source.start();
    RedisClient src = source.client();
    for (int db : {0, 2, 3}) fill_dataset(src, db, 50);
    const std::string rdb = dump_rdb(source, sandbox.subdir("rdb") + "/source.rdb");

    ScriptedMaster legacy;
    RedisServer replica(sandbox, "replica", replica_options(legacy.port()));
    replica.start();
    legacy.accept_client();
    std::vector<Command> handshake = legacy.serve_until_sync();
    bool tried_psync = false;
    for (const auto& cmd : handshake) tried_psync |= cmd[0] == "PSYNC" || cmd[0] == "psync";
    CHECK(tried_psync);  // the Redis 7 replica tried PSYNC, got the 2.6 error, fell back to SYNC

    // A Redis 7 replica accepts only multibulk from its master: SELECT as multibulk here.
    std::vector<std::pair<int, Command>> writes = {
        {0, {"SET", "direct:0", "v0"}}, {0, {"INCR", "k:0:counter"}},
        {2, {"SADD", "k:2:set:3", "new"}}, {3, {"DEL", "k:3:str:7"}},
        {3, {"HSET", "direct:h", "f", "v"}}};
    std::string stream;
    int db = 0;
    for (const auto& [wdb, cmd] : writes) {
        if (wdb != db) stream += multibulk({"SELECT", std::to_string(wdb)});
        db = wdb;
        stream += multibulk(cmd);
    }
    legacy.send_payload(rdb, 2, stream.substr(0, 40));
    legacy.send_chunked(stream.substr(40), 5, 1);
    apply_writes(src, writes);
    wait_keyspace_equal(source, replica);
    CHECK(replica.keyspace().count({3, "direct:h"}) == 1);
}

// Why the proxy must re-encode the legacy stream: fed the 2.6 bytes directly, a Redis 7
// replica stops applying writes at the first inline `select` (PROTOCOL.md section 1). This
// shows that the legacy-dialect scenario would catch a proxy that forwards bytes as is.
TEST_CASE("harness: a Redis 7 replica fed the inline 2.6 dialect directly diverges") {
    Sandbox sandbox;
    RedisServer source(sandbox, "source");
    source.start();
    RedisClient src = source.client();
    fill_dataset(src, 0, 20);
    const std::string rdb = dump_rdb(source, sandbox.subdir("rdb") + "/source.rdb");

    ScriptedMaster legacy;
    RedisServer replica(sandbox, "replica", replica_options(legacy.port()));
    replica.start();
    legacy.accept_client();
    legacy.serve_until_sync();
    LegacyStream stream;
    stream.command({"SET", "before-select", "1"});
    legacy.send_payload(rdb, 1, stream.take_bytes());
    wait_until("the replica to load the RDB and apply the first write", 15,
               [&] { return replica.keyspace().count({0, "before-select"}) == 1; });

    stream.select(2);
    stream.command({"SET", "after-select", "1"});
    stream.select(0);
    stream.command({"SET", "later", "1"});
    legacy.send(stream.take_bytes());
    // A negative cannot be polled to completion: observe for a bounded 1.5 s.
    sleep_ms(1500);
    const Keyspace ks = replica.keyspace();
    CHECK(ks.count({2, "after-select"}) == 0);
    CHECK(ks.count({0, "later"}) == 0);
    CHECK(replica.log_count("Master using the inline protocol") >= 1);
}

TEST_CASE("harness: http_get reads Content-Length and chunked and close-delimited responses") {
    int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener, 4) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    const int port = ntohs(addr.sin_port);

    const std::vector<std::string> responses = {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}",
        "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"err\r\n7\r\nor\": 1}\r\n0\r\n\r\n",
        "HTTP/1.0 200 OK\r\n\r\nuntil close"};
    std::thread server([&] {
        for (const auto& resp : responses) {
            int fd = ::accept(listener, nullptr, nullptr);
            if (fd < 0) return;
            std::string req;
            char buf[1024];
            while (req.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0) break;
                req.append(buf, static_cast<size_t>(n));
            }
            ::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL);
            ::close(fd);
        }
    });
    HttpResponse r1 = http_get(port, "/status");
    HttpResponse r2 = http_get(port, "/nope");
    HttpResponse r3 = http_get(port, "/healthz");
    server.join();
    ::close(listener);
    CHECK(r1.status == 200);
    CHECK(r1.body == "{\"a\": true}");
    CHECK(r2.status == 404);
    CHECK(r2.body == "{\"error\": 1}");
    CHECK(r3.status == 200);
    CHECK(r3.body == "until close");
}

TEST_CASE("harness: Process::stop escalates from SIGTERM to SIGKILL") {
    Sandbox sandbox;
    Process p;
    const std::string out = sandbox.subdir("p") + "/out.log";
    p.spawn({find_executable("sh"), "-c", "trap '' TERM; echo ready; exec sleep 30"}, out);
    wait_until("the shell to ignore SIGTERM", 5, [&] { return tail_file(out, 1) == "ready\n"; });
    CHECK(p.running());
    const auto start = Clock::now();
    CHECK(p.stop(0.3) == 128 + SIGKILL);
    CHECK(seconds_since(start) < 5);
    CHECK_FALSE(p.running());
}
