// Live restart in place (SIGUSR2, proxy/live_restart.h), against real redis-server processes:
// the proxy execs the binary at its path in the same process and keeps every socket. The
// master sees no new SYNC, no replica is disconnected or full-resyncs again, the stream goes on
// byte for byte, and a binary that cannot take over never leaves the process dead.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/process.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/tcp_relay.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// Puts `from` at `path` the way an upgrade does: a copy beside it, renamed over it (the
// running binary's inode stays as it is).
void install_binary(const std::string& from, const std::string& path) {
    const std::string tmp = path + ".new";
    std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing);
    ::chmod(tmp.c_str(), 0755);
    std::filesystem::rename(tmp, path);
}

void install_script(const std::string& text, const std::string& path) {
    const std::string tmp = path + ".new";
    std::ofstream(tmp, std::ios::trunc) << text;
    ::chmod(tmp.c_str(), 0755);
    std::filesystem::rename(tmp, path);
}

// Writes `count` keys big:<i> of `size` pseudo-random letters (xorshift from `seed`), 200 to a
// pipeline: values that do not compress, so the RDB keeps about that size.
void fill_incompressible(RedisClient& c, int count, size_t size, uint64_t seed) {
    uint64_t x = seed;
    std::vector<Command> batch;
    for (int i = 0; i < count; ++i) {
        std::string value(size, ' ');
        for (char& ch : value) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ch = static_cast<char>('a' + x % 26);
        }
        batch.push_back({"SET", "big:" + std::to_string(i), value});
        if (batch.size() == 200 || i + 1 == count) {
            c.must_pipeline(batch);
            batch.clear();
        }
    }
}

// Sends SIGUSR2 and waits until /status shows `restarts` live restarts, an idle live restart,
// and the upstream streaming again.
json live_restart(ProxyProcess& proxy, int64_t restarts) {
    proxy.process().signal(SIGUSR2);
    return proxy.wait_status("the live restart", 30, [&](const json& st, std::string& state) {
        state = "live_restarts " + json_at(st, "/proxy/live_restarts").dump() + ", " +
                json_str(st, "/proxy/live_restart/state") + ", upstream " + json_str(st, "/upstream/state") +
                ", last error: " + json_str(st, "/proxy/live_restart/last_error");
        return json_int(st, "/proxy/live_restarts") == restarts && json_str(st, "/proxy/live_restart/state") == "idle" &&
               json_str(st, "/upstream/state") == "streaming";
    });
}

// Sends SIGUSR2 and waits until the attempt is over and refused (one more log line says so).
json refused_live_restart(ProxyProcess& proxy) {
    const int before = count_log_lines(proxy.log_path(), "live restart refused");
    proxy.process().signal(SIGUSR2);
    wait_until("the live restart to be refused", 40,
               [&] { return count_log_lines(proxy.log_path(), "live restart refused") > before; });
    const json st = proxy.status();
    CHECK(json_str(st, "/proxy/live_restart/state") == "idle");
    CHECK(json_str(st, "/proxy/live_restart/last_error") != "");
    return st;
}

struct Setup {
    Sandbox sandbox;
    std::unique_ptr<RedisServer> master;
    std::unique_ptr<ProxyProcess> proxy;
    std::unique_ptr<RedisServer> r1, r2;
    std::string binary;  // the proxy's binary, a copy the test may replace
    std::string replid;

    explicit Setup(bool sync_only) {
        master = std::make_unique<RedisServer>(sandbox, "master", sync_only ? sync_only_master_options() : RedisServerOptions{});
        master->start();
        {
            RedisClient c = master->client();
            for (int db : {0, 1, 5}) fill_dataset(c, db, 80);
        }
        binary = sandbox.subdir("bin") + "/psync-proxy";
        install_binary(PSYNC_PROXY_BIN, binary);
        ProxyOptions options;
        options.binary = binary;
        // Counts below are exact: no snapshot refresh (a second SYNC) during the test.
        options.extra_args = {"--snapshot-refresh", "no", "--log-segment-size", "64kb"};
        proxy = std::make_unique<ProxyProcess>(sandbox, "proxy", master->port(), options);
        proxy->start();
        replid = json_str(proxy->wait_snapshot(), "/proxy/replid");
        r1 = std::make_unique<RedisServer>(sandbox, "replica1", replica_options(proxy->port()));
        r2 = std::make_unique<RedisServer>(sandbox, "replica2", replica_options(proxy->port()));
        r1->start();
        r2->start();
        proxy->wait_replica_online(r1->port());
        proxy->wait_replica_online(r2->port());
    }

    // What no live restart may change: one SYNC on the master (or its one full resync), one full
    // resync per replica and no lost link, the same lineage, equal data in every db.
    void check_nothing_was_lost(pid_t pid, int64_t full_resyncs = 2) {
        wait_keyspace_equal(*master, *r1);
        wait_keyspace_equal(*master, *r2);
        const json s = proxy->status();
        CHECK(json_int(s, "/proxy/pid") == pid);
        CHECK(proxy->process().pid() == pid);
        CHECK(json_str(s, "/proxy/replid") == replid);
        CHECK(master->info_int("stats", "sync_full") == 1);
        CHECK(master->info_int("stats", "total_forks") == 1);
        CHECK(master->info_int("replication", "connected_slaves") == 1);
        CHECK(json_int(s, "/counters/sync_full") == full_resyncs);  // carried over: the first ones
        CHECK(json_int(s, "/counters/sync_partial_ok") == 0);
        for (RedisServer* r : {r1.get(), r2.get()}) {
            CHECK(r->log_count("Full resync from master") == 1);
            CHECK(r->log_count("Connection with master lost") == 0);
            CHECK(r->info_field("replication", "master_link_status") == "up");
            CHECK(r->info_field("replication", "master_replid") == replid);
        }
    }
};

}  // namespace

TEST_CASE("live restart: SIGUSR2 under writes in dbs 0, 1, 5 in front of a SYNC-only master: same pid, live_restarts 1, one SYNC on the master, no replica disconnected or full-resynced again, equal data") {
    Setup t(true);
    const pid_t pid = t.proxy->process().pid();
    const int64_t started = json_int(t.proxy->status(), "/proxy/started_unix");
    // A SYNC client (2.6-style, no ACKs) whose stream is checked byte for byte across the
    // exec, and a client in the middle of a command.
    ScriptedReplica sync_client(t.proxy->port());
    sync_client.send("SYNC\r\n");
    const uint64_t snap = static_cast<uint64_t>(json_int(t.proxy->status(), "/snapshot/offset"));
    sync_client.read_payload();
    sync_client.begin_stream(snap + 1);
    ScriptedReplica half(t.proxy->port());
    half.send("PING\r\n");
    CHECK(half.read_line() == "+PONG");
    half.send("*2\r\n$4\r\nPING");  // the rest comes after the restart

    BackgroundWriter writer(t.master->port(), {0, 1, 5});
    // And pipelined bursts of large writes in db 1: the exec then finds the upstream in the
    // middle of a command, with bytes read past the last boundary.
    Process burst;
    burst.spawn({"/usr/bin/redis-benchmark", "-h", "127.0.0.1", "-p", std::to_string(t.master->port()), "--dbnum", "1", "-t",
                 "set", "-n", "100000", "-r", "5000", "-d", "300", "-P", "64", "-q"},
                t.sandbox.subdir("bench") + "/out.log");
    writer.wait_more_rounds(100);
    wait_until("the burst to flow", 30, [&] { return t.master->info_int("stats", "total_commands_processed") > 20000; });
    const json after = live_restart(*t.proxy, 1);
    // The half-sent command is completed after the exec and answered by the new image (at
    // once: the client is still in its handshake, which --handshake-timeout bounds).
    half.send("\r\n$2\r\nhi\r\n");
    CHECK(half.read_line() == "$2");
    CHECK(half.read_line() == "hi");
    writer.wait_more_rounds(100);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    CHECK(burst.wait_exit(240) == 0);
    t.check_nothing_was_lost(pid, 3);  // the two replicas and the SYNC client
    CHECK(json_int(after, "/proxy/started_unix") == started);
    CHECK(json_str(after, "/proxy/live_restart/last_error") == "");
    CHECK(count_log_lines(t.proxy->log_path(), "took over from") == 1);

    // The SYNC client's stream went on without a gap: every command whole, up to the end.
    const uint64_t end = static_cast<uint64_t>(json_int(t.proxy->status(), "/proxy/offset"));
    sync_client.read_stream_until(end);
    const auto writes = stream_writes(sync_client.stream_commands());
    CHECK(writes.size() > 200);
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("live restart: into another build put at the same path: /status shows the new build, nothing lost, and back again") {
    Setup t(true);
    const pid_t pid = t.proxy->process().pid();
    CHECK(json_str(t.proxy->status(), "/proxy/build").find("+alt") == std::string::npos);
    BackgroundWriter writer(t.master->port(), {0, 1, 5});
    writer.wait_more_rounds(50);
    install_binary(PSYNC_PROXY_ALT_BIN, t.binary);
    const json s = live_restart(*t.proxy, 1);
    CHECK(json_str(s, "/proxy/build").find("+alt") != std::string::npos);
    writer.wait_more_rounds(50);
    install_binary(PSYNC_PROXY_BIN, t.binary);
    const json back = live_restart(*t.proxy, 2);
    CHECK(json_str(back, "/proxy/build").find("+alt") == std::string::npos);
    writer.wait_more_rounds(50);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    t.check_nothing_was_lost(pid);
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("live restart: a binary that fails at start never leaves the process dead: refused before the exec (broken, missing), or the previous binary takes over again (a build that fails its adoption)") {
    Setup t(true);
    const pid_t pid = t.proxy->process().pid();
    BackgroundWriter writer(t.master->port(), {0, 1, 5});
    writer.wait_more_rounds(30);

    // Not a psync-proxy at all: exits 1 at once.
    install_script("#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n", t.binary);
    json s = refused_live_restart(*t.proxy);
    CHECK_MESSAGE(json_str(s, "/proxy/live_restart/last_error").find("this build is broken") != std::string::npos, s.dump());
    CHECK(json_int(s, "/proxy/live_restarts") == 0);
    writer.wait_more_rounds(30);

    // No file at the path.
    std::filesystem::remove(t.binary);
    s = refused_live_restart(*t.proxy);
    CHECK(json_int(s, "/proxy/live_restarts") == 0);
    writer.wait_more_rounds(30);

    // A psync-proxy that passes the check and then fails to take the handover over: the
    // previous binary (the one still running, whose file is gone) is exec'd again and does.
    install_binary(PSYNC_PROXY_FAIL_ADOPT_BIN, t.binary);
    s = live_restart(*t.proxy, 1);
    CHECK(json_int(s, "/proxy/live_restart/fallbacks") == 1);
    CHECK(json_str(s, "/proxy/build").find("fail-adopt") == std::string::npos);
    CHECK_MESSAGE(json_str(s, "/proxy/live_restart/last_error").find("test build") != std::string::npos, s.dump());
    writer.wait_more_rounds(50);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    t.check_nothing_was_lost(pid);
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("live restart: in front of a PSYNC master (Redis 7): the master sees no new PSYNC and forks once, replicas go on, equal data") {
    Setup t(false);
    const pid_t pid = t.proxy->process().pid();
    BackgroundWriter writer(t.master->port(), {0, 1, 5});
    writer.wait_more_rounds(50);
    const json s = live_restart(*t.proxy, 1);
    CHECK(json_str(s, "/upstream/mode") == "psync");
    writer.wait_more_rounds(50);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    t.check_nothing_was_lost(pid);
    CHECK(t.master->info_int("stats", "sync_partial_ok") == 0);
    // The proxy's ACKs go on from the new image: the master sees its offset move.
    const int64_t master_offset = t.master->info_int("replication", "master_repl_offset");
    wait_until("the proxy's REPLCONF ACK to reach the master's offset", 10, [&] {
        const std::string line = t.master->info_field("replication", "slave0");
        return line.find("offset=" + std::to_string(master_offset)) != std::string::npos;
    });
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("live restart: a replica in the middle of its snapshot transfer gets the rest of the same RDB byte for byte after the exec, then the stream") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        // About 16 MB: the transfer to a replica that reads slowly outlasts the exec.
        RedisClient c = master.client();
        fill_incompressible(c, 2000, 8192, 88172645463325252ull);
    }
    ProxyOptions options;
    options.extra_args = {"--snapshot-refresh", "no"};
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    proxy.start();
    const json first = proxy.wait_snapshot();
    const std::string replid = json_str(first, "/proxy/replid");
    const uint64_t snap_offset = static_cast<uint64_t>(json_int(first, "/snapshot/offset"));
    const auto snap_bytes = static_cast<size_t>(json_int(first, "/snapshot/bytes"));
    std::string rdb;
    {
        std::ifstream f(proxy.data_dir() + "/snapshot-" + replid + ".rdb", std::ios::binary);
        rdb.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    REQUIRE(rdb.size() == snap_bytes);

    ScriptedReplica slow(proxy.port(), 32 * 1024);  // a small receive buffer: the proxy's sends block
    slow.send("SYNC\r\n");
    CHECK(slow.read_line() == "$" + std::to_string(snap_bytes));
    std::string got = slow.read_exact(1 << 20);
    proxy.wait_status("the slow replica to be in send_bulk", 10, [](const json& st, std::string& state) {
        state = st["replicas"].dump();
        for (const auto& r : st["replicas"]) {
            if (r.value("state", "") == "send_bulk") return true;
        }
        return false;
    });
    master.client().must({"SET", "during", "the transfer"});
    const json s = live_restart(proxy, 1);
    master.client().must({"SET", "after", "the restart"});
    got += slow.read_exact(snap_bytes - got.size(), 60);
    CHECK_MESSAGE(got == rdb, "the RDB received differs from the snapshot file");
    slow.begin_stream(snap_offset + 1);
    const uint64_t end = static_cast<uint64_t>(json_int(proxy.status(), "/proxy/offset"));
    slow.read_stream_until(end);
    const auto writes = stream_writes(slow.stream_commands());
    bool during = false, after = false;
    for (const auto& [db, cmd] : writes) {
        if (cmd.size() == 3 && cmd[1] == "during") during = true;
        if (cmd.size() == 3 && cmd[1] == "after") after = true;
    }
    CHECK(during);
    CHECK(after);
    CHECK(json_int(proxy.status(), "/counters/sync_full") == 1);
    CHECK(master.info_int("stats", "sync_full") == 1);
    check_clean_shutdown(proxy);
}

TEST_CASE("live restart: systemd is told (sd_notify): READY=1 at start, RELOADING=1 at SIGUSR2, READY=1 from the new image, and READY=1 again after a refused one") {
    Sandbox sandbox;
    const std::string sock_path = sandbox.subdir("notify") + "/notify.sock";
    int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(sock >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(sock_path.size() < sizeof addr.sun_path);
    std::strcpy(addr.sun_path, sock_path.c_str());
    REQUIRE(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    // What the proxy sent, in order, each datagram as one string.
    std::vector<std::string> received;
    auto wait_for = [&](const std::string& needle) {
        wait_until("the proxy to notify " + needle, 30, [&] {
            char buf[4096];
            for (;;) {
                ssize_t n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
                if (n <= 0) break;
                received.emplace_back(buf, static_cast<size_t>(n));
            }
            for (auto& r : received) {
                if (r.find(needle) != std::string::npos) {
                    r = "(seen) " + r;
                    return true;
                }
            }
            return false;
        });
    };

    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    ProxyOptions options;
    options.binary = sandbox.subdir("bin") + "/psync-proxy";
    install_binary(PSYNC_PROXY_BIN, options.binary);
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    ::setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);  // inherited by the proxy only
    proxy.start();
    ::unsetenv("NOTIFY_SOCKET");
    proxy.wait_snapshot();
    wait_for("READY=1");
    live_restart(proxy, 1);
    wait_for("RELOADING=1");
    wait_for("READY=1");
    install_script("#!/bin/sh\nexit 3\n", options.binary);
    refused_live_restart(proxy);
    wait_for("RELOADING=1");
    wait_for("READY=1\nSTATUS=live restart refused");
    ::close(sock);
    proxy.process().signal(SIGTERM);
    CHECK(proxy.process().wait_exit(15) == 0);
}

TEST_CASE("live restart: asked for while the upstream snapshot is still arriving, it waits for the transfer to end (the master's BGSAVE is not wasted) and then goes on") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient c = master.client();
        fill_incompressible(c, 400, 4096, 2463534242ull);
    }
    TcpRelay relay(master.port());
    relay.set_downstream_rate(256 * 1024);  // the RDB (about 1 MB) takes a few seconds
    ProxyOptions options;
    options.extra_args = {"--snapshot-refresh", "no"};
    options.binary = sandbox.subdir("bin") + "/psync-proxy";
    install_binary(PSYNC_PROXY_BIN, options.binary);
    ProxyProcess proxy(sandbox, "proxy", relay.port(), options);
    proxy.start();
    proxy.wait_status("the transfer to start", 15, [](const json& st, std::string& state) {
        state = json_str(st, "/upstream/state");
        return state == "transfer";
    });
    proxy.process().signal(SIGUSR2);
    proxy.wait_status("the live restart to wait", 15, [](const json& st, std::string& state) {
        state = json_str(st, "/proxy/live_restart/state") + ", upstream " + json_str(st, "/upstream/state");
        return json_str(st, "/proxy/live_restart/state") == "waiting";
    });
    CHECK(count_log_lines(proxy.log_path(), "waiting before the exec: the upstream link is receiving") == 1);
    relay.set_downstream_rate(0);
    const json s = proxy.wait_status("the live restart after the transfer", 30, [](const json& st, std::string& state) {
        state = json_str(st, "/proxy/live_restart/state") + ", upstream " + json_str(st, "/upstream/state");
        return json_int(st, "/proxy/live_restarts") == 1 && json_str(st, "/upstream/state") == "streaming";
    });
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    RedisServer r1(sandbox, "replica1", replica_options(proxy.port()));
    r1.start();
    proxy.wait_replica_online(r1.port());
    master.client().must({"SET", "after", "the restart"});
    wait_keyspace_equal(master, r1);
    CHECK(master.info_int("stats", "sync_full") == 1);
    check_clean_shutdown(proxy);
}

TEST_CASE("live restart: with the master unreachable (the link in backoff) the exec goes ahead, and the new image connects once the master is back") {
    Setup t(true);
    const pid_t pid = t.proxy->process().pid();
    t.master->client().must({"SET", "before", "the stop"});
    wait_keyspace_equal(*t.master, *t.r1);
    t.master->shutdown_save();  // keeps the data: a SYNC afterwards sees the same keys
    t.proxy->wait_status("the link to be lost", 15, [](const json& st, std::string& state) {
        state = json_str(st, "/upstream/state");
        return !json_at(st, "/upstream/link_up").get<bool>();
    });
    t.proxy->process().signal(SIGUSR2);
    t.proxy->wait_status("the live restart", 30, [](const json& st, std::string& state) {
        state = json_str(st, "/proxy/live_restart/state") + ", " + json_str(st, "/proxy/live_restart/last_error");
        return json_int(st, "/proxy/live_restarts") == 1 && json_str(st, "/proxy/live_restart/state") == "idle";
    });
    CHECK(t.proxy->process().pid() == pid);
    CHECK(t.r1->info_field("replication", "master_link_status") == "up");  // the replicas stayed
    t.master->start();
    t.proxy->wait_snapshot();
    t.master->client().must({"SET", "after", "the restart"});
    wait_keyspace_equal(*t.master, *t.r1);
    wait_keyspace_equal(*t.master, *t.r2);
    CHECK(json_int(t.proxy->status(), "/proxy/pid") == pid);
    check_clean_shutdown(*t.proxy);
}
