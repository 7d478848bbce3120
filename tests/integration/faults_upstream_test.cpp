// Faults on the upstream side: the master killed mid-RDB and mid-stream, restarted, refusing
// SYNC with "-ERR Unable to perform background save" for a while, sending a truncated payload
// and going silent, and sending bytes that are not RESP. Each time the proxy logs one clear
// line, keeps serving its replicas what it has (an interrupted download is never used, a
// command the master did not finish is never shown), recovers by itself once the master is
// healthy, and the replicas end equal to the master.
//
// The exact faults come from the scripted 2.6-dialect master, with a real Redis 7 server
// ("source") holding the data that master stands for: it provides the RDBs, gets the writes
// the stream carries, and is the reference for the replicas. The kill-and-restart scenario
// uses a real SYNC-only Redis 7 master.
#include <doctest/doctest.h>

#include <csignal>
#include <fstream>
#include <memory>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/tcp_relay.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

bool has_tmp_file(const std::string& dir) {
    for (const auto& name : dir_entries(dir))
        if (name.size() >= 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) return true;
    return false;
}

std::vector<std::string> snapshot_files(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& name : dir_entries(dir))
        if (name.rfind("snapshot", 0) == 0) out.push_back(name);
    return out;
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
    return out;
}

// net.ipv4.tcp_wmem's maximum: the most a socket's send buffer grows to (4 MB if unknown).
int64_t max_socket_send_buffer() {
    std::ifstream f("/proc/sys/net/ipv4/tcp_wmem");
    int64_t min = 0, def = 0, max = 0;
    if (f >> min >> def >> max && max > 0) return max;
    return 4 << 20;
}

// A scripted legacy master in front of the proxy, the proxy, and Redis 7 replicas behind it.
struct LegacySetup {
    explicit LegacySetup(ProxyOptions options = {}) : source(sandbox, "source") {
        source.start();
        RedisClient src = source.client();
        for (int db : {0, 2, 3}) fill_dataset(src, db, 60);
        proxy = std::make_unique<ProxyProcess>(sandbox, "proxy", legacy.port(), std::move(options));
        proxy->start();
    }

    // The source's data as an RDB, as a legacy master would send it after SYNC.
    std::string rdb() { return dump_rdb(source, sandbox.subdir("rdb") + "/source-" + std::to_string(++rdbs) + ".rdb"); }

    // Waits for the proxy's connection and handshake, up to its SYNC.
    void accept_sync(double timeout_s = 20) {
        legacy.accept_client(timeout_s);
        legacy.serve_until_sync();
        stream = LegacyStream();  // a new SYNC: the stream starts again in db 0
    }

    // Sends what the stream recorded to the proxy and applies the writes to the source.
    void flush_stream() {
        legacy.send(stream.take_bytes());
        RedisClient src = source.client();
        apply_writes(src, stream.take_writes());
    }

    // Some writes in dbs 0, 2 and 3 through the legacy stream (inline selects and all).
    void stream_writes(const std::string& tag) {
        for (int db : {2, 0, 3}) {
            stream.select(db);
            stream.command({"SET", "stream:" + tag + ":" + std::to_string(db), tag});
            stream.command({"INCR", "k:" + std::to_string(db) + ":counter"});
            stream.command({"RPUSH", "stream:list", tag});
        }
        stream.ping_multibulk();
        flush_stream();
    }

    RedisServer& add_replica(const std::string& name) {
        replicas.push_back(std::make_unique<RedisServer>(sandbox, name, replica_options(proxy->port())));
        replicas.back()->start();
        return *replicas.back();
    }

    void wait_replicas_equal(double timeout_s = 30) {
        for (auto& r : replicas) wait_keyspace_equal(source, *r, timeout_s);
    }

    // First lineage: the whole payload, `n` replicas online and equal, some stream writes.
    std::string start_lineage(int n) {
        accept_sync();
        legacy.send_payload(rdb(), 1);
        const json s = proxy->wait_snapshot();
        for (int i = 0; i < n; ++i) add_replica("replica" + std::to_string(i + 1));
        for (auto& r : replicas) proxy->wait_replica_online(r->port());
        stream_writes("lineage1");
        wait_replicas_equal();
        return json_str(s, "/proxy/replid");
    }

    // The replicas are still served the lineage `replid`: listed online, link up, following it.
    void check_replicas_kept(const std::string& replid, int64_t sync_full) {
        const json s = proxy->status();
        CHECK_MESSAGE(json_str(s, "/proxy/replid") == replid, "the lineage changed: " << s.dump());
        CHECK(json_int(s, "/counters/sync_full") == sync_full);
        for (auto& r : replicas) {
            CHECK_MESSAGE(replica_field(s, r->port(), "state") == "online", r->name() << ": " << s.dump());
            const std::string info = r->info("replication");
            CHECK_MESSAGE(info_value(info, "master_link_status") == "up", r->name() << ":\n" << info);
            CHECK(info_value(info, "master_replid") == replid);
        }
    }

    // Waits for a new lineage (another replid) with every replica moved to it, equal to the
    // source; each replica full-resyncs exactly once for it (no loop).
    std::string wait_new_lineage(const std::string& old_replid) {
        const json s = proxy->wait_status("a new lineage", 30, [&](const json& st, std::string&) {
            const std::string id = json_str(st, "/proxy/replid");
            return is_replid(id) && id != old_replid && json_str(st, "/upstream/state") == "streaming";
        });
        const std::string replid = json_str(s, "/proxy/replid");
        for (auto& r : replicas) {
            wait_until(r->name() + " to follow the new lineage", 30, [&](std::string& state) {
                const std::string info = r->info("replication");
                state = info_value(info, "master_replid") + " " + info_value(info, "master_link_status");
                return info_value(info, "master_replid") == replid && info_value(info, "master_link_status") == "up";
            });
        }
        wait_replicas_equal();
        for (auto& r : replicas) CHECK(r->log_count("Full resync from master: " + replid) == 1);
        return replid;
    }

    int error_lines(const std::string& needle) const { return count_log_lines(proxy->log_path(), needle, true); }

    Sandbox sandbox;
    RedisServer source;
    ScriptedMaster legacy;
    std::unique_ptr<ProxyProcess> proxy;
    std::vector<std::unique_ptr<RedisServer>> replicas;
    LegacyStream stream;
    int rdbs = 0;
};

}  // namespace

TEST_CASE("faults: the master killed mid-RDB: the partial download is never used, replicas keep the old lineage, the proxy retries") {
    LegacySetup t;
    const std::string replid1 = t.start_lineage(2);
    const int64_t full_before = json_int(t.proxy->status(), "/counters/sync_full");
    const Keyspace lineage1 = t.source.keyspace();

    // The link breaks in the middle of a command: it must be taken back, never shown.
    std::string cut = multibulk({"SET", "unfinished", "never applied"});
    t.legacy.send(cut.substr(0, cut.size() - 6));
    sleep_ms(200);
    t.legacy.close_client();
    t.proxy->wait_status("the link loss noticed", 10, [](const json& s, std::string&) {
        return json_str(s, "/upstream/state") != "streaming";
    });
    CHECK(t.error_lines("closed the connection") == 1);

    // Meanwhile the master changes; when the proxy is back, it dies half-way through the RDB.
    {
        RedisClient src = t.source.client();
        write_burst(src, {0, 2, 3}, 1);
    }
    const std::string rdb2 = t.rdb();
    t.accept_sync();
    t.legacy.send("\n$" + std::to_string(rdb2.size()) + "\r\n" + rdb2.substr(0, rdb2.size() / 2));
    t.proxy->wait_status("half of the RDB received", 10, [&](const json& s, std::string&) {
        return json_str(s, "/upstream/state") == "transfer" &&
               json_at(s, "/upstream/rdb_bytes_received").get<int64_t>() == static_cast<int64_t>(rdb2.size() / 2);
    });
    t.legacy.close_client();
    wait_until("the partial download to be removed", 10, [&](std::string& state) {
        state = join(dir_entries(t.proxy->data_dir()));
        return !has_tmp_file(t.proxy->data_dir()) && json_str(t.proxy->status(), "/upstream/state") != "transfer";
    });
    CHECK(t.error_lines("closed the connection") == 2);
    const json s = t.proxy->status();
    CHECK(json_str(s, "/upstream/last_error").find("closed") != std::string::npos);
    CHECK(json_str(s, "/snapshot/replid") == replid1);
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(snapshot_files(t.proxy->data_dir()) == std::vector<std::string>{"snapshot-" + replid1 + ".rdb"});
    // Stale but consistent: the replicas hold what the first lineage carried, nothing of the
    // unfinished command.
    t.check_replicas_kept(replid1, full_before);
    for (auto& r : t.replicas) {
        const std::string diff = diff_keyspaces(lineage1, r->keyspace(), "first lineage", r->name());
        CHECK_MESSAGE(diff.empty(), diff);
    }

    // The master is healthy again: the whole RDB this time.
    t.accept_sync();
    t.legacy.send_payload(rdb2, 1);
    t.stream_writes("lineage2");
    const std::string replid2 = t.wait_new_lineage(replid1);
    CHECK(json_int(t.proxy->status(), "/upstream/sync_count") == 2);
    CHECK(snapshot_files(t.proxy->data_dir()) == std::vector<std::string>{"snapshot-" + replid2 + ".rdb"});
    for (auto& r : t.replicas) CHECK(r->keyspace().count({0, "unfinished"}) == 0);
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("faults: the master refusing SYNC with -ERR Unable to perform background save: one line each time, replicas served, recovery") {
    LegacySetup t;
    const std::string replid1 = t.start_lineage(1);
    const int64_t full_before = json_int(t.proxy->status(), "/counters/sync_full");
    t.legacy.close_client();

    constexpr int kRefusals = 2;
    for (int i = 1; i <= kRefusals; ++i) {
        t.accept_sync();
        t.legacy.send("\n-ERR Unable to perform background save\r\n");
        CHECK_MESSAGE(t.legacy.wait_client_closed(10), "the proxy kept the link after the master refused SYNC");
        const json s = t.proxy->wait_status("the refusal in /status", 10, [&](const json& st, std::string&) {
            return json_str(st, "/upstream/last_error").find("Unable to perform background save") != std::string::npos;
        });
        CHECK(t.error_lines("Unable to perform background save") == i);
        CHECK(json_at(s, "/upstream/link_up") == false);
        t.check_replicas_kept(replid1, full_before);
    }
    {
        RedisClient src = t.source.client();
        write_burst(src, {0, 2, 3}, 1);
    }
    t.accept_sync();
    t.legacy.send_payload(t.rdb(), 2);
    t.stream_writes("after");
    t.wait_new_lineage(replid1);
    CHECK(t.error_lines("Unable to perform background save") == kRefusals);
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("faults: a truncated payload followed by silence times out, is discarded, and the next SYNC is used") {
    ProxyOptions options;
    options.extra_args = {"--upstream-timeout", "2"};
    LegacySetup t(options);
    // A replica waiting from the start: it must get nothing until a complete snapshot exists.
    RedisServer& early = t.add_replica("early");
    const std::string rdb1 = t.rdb();
    t.accept_sync();
    t.legacy.send("$" + std::to_string(rdb1.size()) + "\r\n" + rdb1.substr(0, rdb1.size() - 100));
    t.proxy->wait_status("the upstream read timeout", 10, [](const json& s, std::string&) {
        return json_str(s, "/upstream/last_error").find("no data from the master") != std::string::npos;
    });
    CHECK(t.error_lines("no data from the master") == 1);
    wait_until("the partial download to be removed", 5, [&] { return !has_tmp_file(t.proxy->data_dir()); });
    const json s = t.proxy->status();
    CHECK(json_at(s, "/snapshot").is_null());
    CHECK(json_int(s, "/upstream/sync_count") == 0);
    CHECK(snapshot_files(t.proxy->data_dir()).empty());
    CHECK(early.info_field("replication", "master_link_status") == "down");
    CHECK(early.keyspace().empty());

    // Healthy: the whole payload, and the stream kept alive (the proxy's timeout is 2 s).
    t.accept_sync();
    t.legacy.send_payload(rdb1, 1);
    t.stream_writes("after");
    auto last_ping = Clock::now();
    wait_until("the early replica equal to the source", 30, [&](std::string& state) {
        if (seconds_since(last_ping) > 0.5) {
            t.legacy.send(multibulk({"PING"}));
            last_ping = Clock::now();
        }
        state = diff_keyspaces(t.source.keyspace(), early.keyspace(), "source", "early", 3);
        return state.empty();
    });
    const json after = t.proxy->status();
    CHECK(json_int(after, "/upstream/sync_count") == 1);
    CHECK(t.error_lines("no data from the master") == 1);
    CHECK(early.log_count("Full resync from master") == 1);
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("faults: bytes that are not RESP in the stream: the link is dropped, nothing after them is served, the proxy re-syncs") {
    LegacySetup t;
    const std::string replid1 = t.start_lineage(2);
    const int64_t full_before = json_int(t.proxy->status(), "/counters/sync_full");

    // A good command, then what a 2.6 master queues when it gets a REPLCONF ACK (an error
    // reply, in the stream), then commands that must never reach the replicas.
    t.stream.select(2);
    t.stream.command({"SET", "before-garbage", "applied"});
    t.flush_stream();
    t.legacy.send("-ERR Unrecognized REPLCONF option: ack\r\n" + multibulk({"SET", "after-garbage", "never"}));
    CHECK_MESSAGE(t.legacy.wait_client_closed(10), "the proxy kept reading a stream that is not RESP");
    t.proxy->wait_status("the error in /status", 10, [](const json& s, std::string&) {
        return json_str(s, "/upstream/last_error").find("not RESP") != std::string::npos;
    });
    CHECK(t.error_lines("not RESP") == 1);
    // The replicas hold exactly what came before the bad bytes.
    t.wait_replicas_equal();
    for (auto& r : t.replicas) CHECK(r->keyspace().count({2, "after-garbage"}) == 0);
    t.check_replicas_kept(replid1, full_before);

    t.accept_sync();
    t.legacy.send_payload(t.rdb(), 1);
    t.stream_writes("after");
    t.wait_new_lineage(replid1);
    for (auto& r : t.replicas) CHECK(r->keyspace().count({2, "after-garbage"}) == 0);
    CHECK(t.error_lines("not RESP") == 1);
    check_clean_shutdown(*t.proxy);
}

TEST_CASE("faults: a real master killed with SIGKILL mid-stream and restarted: replicas served meanwhile, then equal to what it holds") {
    ProxiedCluster c;
    c.start(2);
    const json s0 = c.proxy->status();
    const std::string replid1 = json_str(s0, "/proxy/replid");
    {
        RedisClient m = c.master.client();
        write_burst(m, ProxiedCluster::kDbs, 1);
        m.must({"SAVE"});
        // Written after the last save: the master loses it when it crashes, so the replicas
        // must lose it too once they follow the restarted master.
        m.must_pipeline({{"SELECT", "1"}, {"SET", "after-save:1", "lost"}, {"SELECT", "5"}, {"SET", "after-save:5", "lost"}});
    }
    c.wait_replicas_equal();
    CHECK(c.replicas[0]->keyspace().count({1, "after-save:1"}) == 1);

    {
        BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
        writer.wait_more_rounds(30);
        c.master.process().signal(SIGKILL);
        REQUIRE(c.master.process().wait_exit(10).has_value());
    }  // the writer saw its connection die
    c.proxy->wait_status("the link loss noticed", 10, [](const json& s, std::string&) {
        return json_at(s, "/upstream/link_up") == false;
    });
    sleep_ms(2500);  // a few reconnect attempts against a dead master
    const json down = c.proxy->status();
    CHECK(!json_str(down, "/upstream/last_error").empty());
    CHECK(json_str(down, "/proxy/replid") == replid1);
    for (auto& r : c.replicas) {
        CHECK(replica_field(down, r->port(), "state") == "online");
        CHECK(r->info_field("replication", "master_link_status") == "up");
    }
    // One line for the loss, then one per failed attempt, saying why.
    const std::string log = c.proxy->log_path();
    CHECK_MESSAGE(count_log_lines(log, "closed the connection", true) + count_log_lines(log, "reset", true) == 1,
                  grep_log(log, "retrying in"));
    CHECK_MESSAGE(count_log_lines(log, "cannot connect", true) >= 1, grep_log(log, "retrying in"));

    c.master.start();  // loads the last save
    {
        RedisClient m = c.master.client();
        write_burst(m, ProxiedCluster::kDbs, 2);
    }
    const json s = c.proxy->wait_status("a new lineage from the restarted master", 60, [&](const json& st, std::string&) {
        const std::string id = json_str(st, "/proxy/replid");
        return is_replid(id) && id != replid1 && json_str(st, "/upstream/state") == "streaming";
    });
    const std::string replid2 = json_str(s, "/proxy/replid");
    for (auto& r : c.replicas) {
        wait_until(r->name() + " to follow the new lineage", 30, [&] {
            return r->info_field("replication", "master_replid") == replid2;
        });
    }
    c.wait_replicas_equal();
    for (auto& r : c.replicas) {
        CHECK(r->keyspace().count({1, "after-save:1"}) == 0);
        CHECK(r->keyspace().count({5, "after-save:5"}) == 0);
        CHECK(r->log_count("Full resync from master: " + replid2) == 1);
    }
    CHECK(c.master.info_int("stats", "sync_full") == 1);  // the restarted master: the proxy only
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("faults: a real master killed with SIGKILL mid-RDB: the partial download is discarded, replicas stay, recovery after its restart") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    const int values = static_cast<int>((2 * max_socket_send_buffer() + (4 << 20)) / 10000);
    {
        RedisClient m = master.client();
        for (int db : {0, 1, 5}) fill_dataset(m, db, 60);
        // An RDB that LZF cannot compress, larger than twice what the master's socket may
        // buffer (what is in the kernel is delivered even after the master is killed).
        std::vector<Command> cmds = {{"SELECT", "1"}};
        std::string v(10000, 'a');
        uint64_t x = 88172645463325252ull;
        for (int i = 0; i < values; ++i) {
            for (auto& ch : v) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ch = static_cast<char>('a' + x % 26);
            }
            cmds.push_back({"SET", "big:" + std::to_string(i), v});
        }
        m.must_pipeline(cmds);
    }
    TcpRelay link(master.port());  // the proxy's upstream link goes through it
    ProxyProcess proxy(sandbox, "proxy", link.port());
    proxy.start();
    const std::string replid1 = json_str(proxy.wait_snapshot(), "/proxy/replid");
    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    proxy.wait_replica_online(replica.port());
    // DEBUG DIGEST (a hash of all data and expire times) while the data is large: reading
    // 12 MB key by key is slow; the keyspaces are compared in full once it is small again.
    auto digest = [](const RedisServer& r) { return r.client().must({"DEBUG", "DIGEST"}).str; };
    const std::string lineage1 = digest(master);
    wait_until("the replica to hold the master's data", 30, [&] { return digest(replica) == lineage1; });

    // The master saves and drops the proxy's link; the next RDB crawls at 2 MB/s, and the
    // master dies a fifth of the way through it (the rest of what its socket held then
    // arrives at full speed, and then the end of the connection).
    link.set_downstream_rate(2'000'000);
    master.client().must({"SAVE"});
    master.client().must({"CLIENT", "KILL", "TYPE", "replica"});
    const json mid = proxy.wait_status("a fifth of the next RDB received", 30, [](const json& s, std::string&) {
        const json& expected = json_at(s, "/upstream/rdb_bytes_expected");
        return json_str(s, "/upstream/state") == "transfer" && expected.is_number() &&
               json_int(s, "/upstream/rdb_bytes_received") * 5 >= expected.get<int64_t>();
    });
    REQUIRE(json_int(mid, "/upstream/rdb_bytes_received") < json_at(mid, "/upstream/rdb_bytes_expected").get<int64_t>());
    master.process().signal(SIGKILL);
    REQUIRE(master.process().wait_exit(10).has_value());
    link.set_downstream_rate(0);
    proxy.wait_status("the interrupted download noticed", 15, [](const json& s, std::string&) {
        return json_str(s, "/upstream/state") != "transfer";
    });
    wait_until("the partial download to be removed", 10, [&](std::string& state) {
        state = join(dir_entries(proxy.data_dir()));
        return !has_tmp_file(proxy.data_dir());
    });
    const json after_kill = proxy.status();
    CHECK(json_str(after_kill, "/proxy/replid") == replid1);
    CHECK(json_int(after_kill, "/upstream/sync_count") == 1);
    CHECK(snapshot_files(proxy.data_dir()) == std::vector<std::string>{"snapshot-" + replid1 + ".rdb"});
    CHECK(replica_field(after_kill, replica.port(), "state") == "online");
    CHECK(replica.info_field("replication", "master_link_status") == "up");
    CHECK(digest(replica) == lineage1);

    // The master comes back (from its save) and the proxy recovers by itself.
    master.start();
    wait_until("the master to load its save", 30, [&] { return master.client().command({"PING"}).str == "PONG"; });
    {
        RedisClient m = master.client();
        write_burst(m, {0, 1, 5}, 1);
        Command del = {"DEL"};
        for (int i = 0; i < values; ++i) del.push_back("big:" + std::to_string(i));
        m.must_pipeline({{"SELECT", "1"}, del});
    }
    const json s = proxy.wait_status("a new lineage", 60, [&](const json& st, std::string&) {
        const std::string id = json_str(st, "/proxy/replid");
        return is_replid(id) && id != replid1 && json_str(st, "/upstream/state") == "streaming";
    });
    const std::string replid2 = json_str(s, "/proxy/replid");
    wait_until("the replica to follow the new lineage", 30, [&] {
        return replica.info_field("replication", "master_replid") == replid2;
    });
    wait_keyspace_equal(master, replica);
    CHECK(replica.log_count("Full resync from master: " + replid2) == 1);
    CHECK(snapshot_files(proxy.data_dir()) == std::vector<std::string>{"snapshot-" + replid2 + ".rdb"});
    check_clean_shutdown(proxy);
}
