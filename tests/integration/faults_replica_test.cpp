// Faults on the replica side of the proxy, with real Redis 7 replicas and a SYNC-only Redis 7
// master under writes: a replica killed with SIGKILL mid-stream and mid-RDB-transfer, frozen
// with SIGSTOP for longer than the ping period, its link cut again and again, and a slow
// replica behind a relay that reads at a small fixed rate. Each replica ends equal to the
// master; it comes back with a partial resync when the proxy still holds its bytes and with
// a full one (from the proxy's snapshot, never from the master) otherwise.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <optional>
#include <thread>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/tcp_relay.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

int64_t master_sync_full(const RedisServer& master) { return master.info_int("stats", "sync_full"); }

// Waits until the proxy no longer lists a replica with this listening port.
void wait_replica_gone(const ProxyProcess& proxy, int replica_port, double timeout_s = 15) {
    proxy.wait_status("replica " + std::to_string(replica_port) + " dropped from /status", timeout_s,
                      [&](const json& s, std::string&) { return find_replica(s, replica_port).is_null(); });
}

// Writes large values at a steady rate (pipelines of SETs of `value_size` bytes over a
// bounded set of keys in dbs 0 and 1) from a thread: a replication stream of a few MB/s.
class BulkWriter {
public:
    BulkWriter(int port, size_t value_size, uint64_t bytes_per_second)
        : port_(port), value_size_(value_size), rate_(bytes_per_second), thread_([this] { run(); }) {}
    ~BulkWriter() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    uint64_t bytes() const { return bytes_; }
    std::string error() const {
        std::lock_guard lock(mutex_);
        return error_;
    }

private:
    void run() {
        try {
            RedisClient c = RedisClient::connect(port_);
            uint64_t i = 0;
            const auto start = Clock::now();
            while (!stop_) {
                if (static_cast<double>(bytes_) > seconds_since(start) * static_cast<double>(rate_)) {
                    sleep_ms(5);
                    continue;
                }
                std::vector<Command> cmds = {{"SELECT", std::to_string(i % 2)}};
                for (int k = 0; k < 16; ++k, ++i) {
                    std::string value(value_size_, static_cast<char>('a' + i % 26));
                    value += std::to_string(i);
                    cmds.push_back({"SET", "bulk:" + std::to_string(i % 40), value});
                }
                c.must_pipeline(cmds);
                bytes_ += 16 * value_size_;
            }
        } catch (const std::exception& e) {
            std::lock_guard lock(mutex_);
            error_ = e.what();
        }
    }
    int port_;
    size_t value_size_;
    uint64_t rate_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> bytes_{0};
    mutable std::mutex mutex_;
    std::string error_;
    std::thread thread_;
};

}  // namespace

TEST_CASE("faults: a replica killed with SIGKILL mid-stream comes back with one full resync from the proxy") {
    ProxiedCluster c;
    c.start(2);
    RedisServer& victim = *c.replicas[0];
    RedisServer& other = *c.replicas[1];
    const SyncCounters before = sync_counters(c.proxy->status());

    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(40);
    victim.process().signal(SIGKILL);
    REQUIRE(victim.process().wait_exit(10).has_value());
    wait_replica_gone(*c.proxy, victim.port());
    writer.wait_more_rounds(60);  // the master moves on while the replica is dead
    // Restarted on the same port and directory. Whatever it finds there (the RDB it loaded at
    // its first sync, with the master's replication id) is no position in the proxy's
    // stream: it must get a full resync, never +CONTINUE.
    victim.start();
    c.proxy->wait_replica_online(victim.port());
    writer.wait_more_rounds(40);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    c.wait_replicas_equal();

    const json s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    CHECK_MESSAGE(after.sync_full == before.sync_full + 1, before.describe() << " -> " << after.describe());
    CHECK_MESSAGE(after.sync_partial_ok == before.sync_partial_ok, before.describe() << " -> " << after.describe());
    CHECK(after.upstream_syncs == before.upstream_syncs);
    CHECK(replica_field(s, victim.port(), "sync") == "full");
    CHECK(victim.info_field("replication", "master_replid") == json_str(s, "/proxy/replid"));
    // The full resync came from the proxy's snapshot: the master served one SYNC in all.
    CHECK(master_sync_full(c.master) == 1);
    // The other replica never noticed: still its first full sync, no reconnect.
    CHECK(other.log_count("Full resync from master") == 1);
    CHECK(other.log_count("Successful partial resynchronization") == 0);
    CHECK(other.log_count("Connection with master lost") == 0);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("faults: a replica killed with SIGKILL mid-RDB-transfer does not disturb another one reading the same snapshot") {
    ProxiedCluster c;
    // About 6 MB of snapshot (more than socket buffers hold), sent at 2 MB/s.
    fill_big_values(c.master, 600, 10000);
    c.start(0);
    const json first = c.proxy->status();
    const int64_t snapshot_bytes = json_int(first, "/snapshot/bytes");
    REQUIRE(snapshot_bytes > 5'000'000);

    TcpRelay relay_victim(c.proxy->port()), relay_other(c.proxy->port());
    relay_victim.set_downstream_rate(2'000'000);
    relay_other.set_downstream_rate(2'000'000);
    RedisServer victim(c.sandbox, "victim", replica_options(relay_victim.port()));
    RedisServer other(c.sandbox, "other", replica_options(relay_other.port()));
    victim.start();
    other.start();

    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    // Both are loading the snapshot; kill one a quarter of the way through.
    auto read_bytes = [](const RedisServer& r) -> int64_t {
        const std::string info = r.info("replication");
        if (info_value(info, "master_sync_in_progress") != "1") return -1;
        const std::string v = info_value(info, "master_sync_read_bytes");
        return v.empty() ? -1 : std::stoll(v);
    };
    wait_until("the victim a quarter through the snapshot, the other one loading it too", 30, [&](std::string& state) {
        const int64_t v = read_bytes(victim), o = read_bytes(other);
        state = "victim read " + std::to_string(v) + ", other read " + std::to_string(o);
        return v >= snapshot_bytes / 4 && o > 0;
    });
    victim.process().signal(SIGKILL);
    REQUIRE(victim.process().wait_exit(10).has_value());
    wait_replica_gone(*c.proxy, victim.port());
    const int64_t other_read = read_bytes(other);
    CHECK_MESSAGE((other_read > 0 && other_read < snapshot_bytes), "the other replica was not mid-transfer: " << other_read);

    c.proxy->wait_replica_online(other.port());
    wait_until("the other replica to finish loading", 30, [&] { return read_bytes(other) < 0; });
    relay_victim.set_downstream_rate(0);
    relay_other.set_downstream_rate(0);
    victim.start();  // no dump.rdb: it died in its first transfer
    c.proxy->wait_replica_online(victim.port());
    writer.wait_more_rounds(30);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(c.master, other);
    wait_keyspace_equal(c.master, victim);

    const json s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    // Three full resyncs served from the one snapshot (other, victim twice); one upstream SYNC.
    CHECK_MESSAGE(after.sync_full == 3, after.describe());
    CHECK(after.sync_partial_ok == 0);
    CHECK(after.upstream_syncs == 1);
    CHECK(json_str(s, "/snapshot/replid") == json_str(first, "/snapshot/replid"));
    CHECK(master_sync_full(c.master) == 1);
    CHECK(other.log_count("Full resync from master") == 1);
    CHECK(other.log_count("Connection with master lost") == 0);
    CHECK(relay_other.accepted_connections() == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("faults: a replica frozen with SIGSTOP past the ping period resumes after SIGCONT without a full resync") {
    ProxiedCluster c;
    c.start(2);
    RedisServer& frozen = *c.replicas[0];
    RedisServer& other = *c.replicas[1];
    const SyncCounters before = sync_counters(c.proxy->status());

    auto writer = std::make_unique<BackgroundWriter>(c.master.port(), ProxiedCluster::kDbs);
    writer->wait_more_rounds(20);
    frozen.process().signal(SIGSTOP);
    const auto frozen_at = Clock::now();
    writer->wait_more_rounds(200);
    writer->stop();
    CHECK_MESSAGE(writer->error().empty(), writer->error());
    // While one replica is frozen, the other keeps up with the master.
    wait_keyspace_equal(c.master, other, 15);
    CHECK(frozen.process().running());
    // Frozen for longer than the proxy's ping period (10 s), writes going on.
    writer = std::make_unique<BackgroundWriter>(c.master.port(), ProxiedCluster::kDbs);
    while (seconds_since(frozen_at) < 11.0) sleep_ms(100);
    frozen.process().signal(SIGCONT);
    writer->wait_more_rounds(50);
    writer->stop();
    CHECK_MESSAGE(writer->error().empty(), writer->error());
    c.wait_replicas_equal();

    const json s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    CHECK_MESSAGE(after.sync_full == before.sync_full, before.describe() << " -> " << after.describe());
    CHECK(after.upstream_syncs == before.upstream_syncs);
    CHECK(replica_field(s, frozen.port(), "state") == "online");
    CHECK(frozen.info_field("replication", "master_link_status") == "up");
    CHECK(frozen.log_count("Full resync from master") == 1);
    CHECK(master_sync_full(c.master) == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("faults: a replica whose link is cut again and again under writes resumes with a partial resync each time") {
    ProxiedCluster c;
    c.start(1);
    TcpRelay relay(c.proxy->port());
    RedisServer cut(c.sandbox, "cut", replica_options(relay.port()));
    cut.start();
    c.proxy->wait_replica_online(cut.port());
    const SyncCounters before = sync_counters(c.proxy->status());

    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    constexpr int kCuts = 4;
    for (int i = 1; i <= kCuts; ++i) {
        writer.wait_more_rounds(30);
        CHECK(relay.cut_all() == 1);
        c.proxy->wait_status("the replica back online after cut " + std::to_string(i), 30,
                             [&](const json& s, std::string& state) {
                                 state = sync_counters(s).describe();
                                 return json_int(s, "/counters/sync_partial_ok") >= before.sync_partial_ok + i &&
                                        replica_field(s, cut.port(), "state") == "online";
                             });
    }
    writer.wait_more_rounds(30);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(c.master, cut);
    c.wait_replicas_equal();

    const json s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    CHECK_MESSAGE(after.sync_partial_ok == before.sync_partial_ok + kCuts, before.describe() << " -> " << after.describe());
    CHECK_MESSAGE(after.sync_full == before.sync_full, before.describe() << " -> " << after.describe());
    CHECK(replica_field(s, cut.port(), "sync") == "partial");
    CHECK(cut.log_count("Successful partial resynchronization with master") == kCuts);
    CHECK(cut.log_count("Full resync from master") == 1);
    CHECK(relay.accepted_connections() == kCuts + 1);
    CHECK(master_sync_full(c.master) == 1);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("faults: a slow replica lags without growing the proxy's memory, slowing the others, or being cut off") {
    ProxiedCluster c;
    // Freed memory held in AddressSanitizer's quarantine would look like growth.
    std::optional<ScopedEnv> asan;
    asan.emplace("ASAN_OPTIONS", asan_options_for_memory_measurement());
    c.start(2, 40);
    asan.reset();

    TcpRelay relay(c.proxy->port());
    constexpr uint64_t kSlowRate = 64 * 1024;  // bytes per second
    relay.set_downstream_rate(kSlowRate);
    RedisServer slow(c.sandbox, "slow", replica_options(relay.port()));
    slow.start();
    c.proxy->wait_replica_online(slow.port());
    const SyncCounters before = sync_counters(c.proxy->status());
    const pid_t proxy_pid = c.proxy->process().pid();

    BulkWriter writer(c.master.port(), 4000, 3'000'000);
    sleep_ms(1500);  // the slow replica's path (socket buffers, relay) fills up
    const long rss_start = rss_kb(proxy_pid);
    const uint64_t written_start = writer.bytes();
    int64_t max_fast_lag = 0;     // proxy offset - acked offset (acks come once a second)
    int64_t max_fast_unsent = 0;  // proxy offset - offset handed to the replica's socket
    const auto start = Clock::now();
    while (seconds_since(start) < 7.0) {
        const json s = c.proxy->status();
        for (auto& r : c.replicas) {
            const json e = find_replica(s, r->port());
            max_fast_lag = std::max(max_fast_lag, json_int(e, "/lag_bytes"));
            max_fast_unsent = std::max(max_fast_unsent, json_int(s, "/proxy/offset") - json_int(e, "/sent_offset"));
        }
        sleep_ms(250);
    }
    const long rss_end = rss_kb(proxy_pid);
    const uint64_t written = writer.bytes() - written_start;
    writer.stop();
    REQUIRE_MESSAGE(writer.error().empty(), writer.error());
    const json s = c.proxy->status();
    const int64_t slow_lag = json_int(find_replica(s, slow.port()), "/lag_bytes");
    INFO("wrote " << written / 1024 << " KB in 7 s; slow replica " << slow_lag / 1024 << " KB behind; proxy RSS "
                     << rss_start << " -> " << rss_end << " KB; fast replicas at most " << max_fast_lag / 1024
                     << " KB behind, " << max_fast_unsent << " bytes unsent");
    REQUIRE_MESSAGE(slow_lag > 8 * 1024 * 1024, "the test did not make the replica lag much: " << slow_lag);
    // The lag lives on disk (the log), not in the proxy's memory.
    CHECK_MESSAGE(rss_end - rss_start < 4 * 1024, "proxy RSS grew from " << rss_start << " KB to " << rss_end
                                                   << " KB while a replica fell " << slow_lag << " bytes behind");
    // The others kept up: never far behind, and equal to the master soon after the writes
    // stop, while the slow one is still catching up.
    CHECK_MESSAGE(max_fast_unsent < 1024 * 1024, "the proxy held back " << max_fast_unsent << " bytes from a fast replica");
    CHECK_MESSAGE(max_fast_lag < 8 * 1024 * 1024, "a fast replica fell " << max_fast_lag << " bytes behind");
    c.wait_replicas_equal(10);
    const json later = c.proxy->status();
    CHECK_MESSAGE(json_int(find_replica(later, slow.port()), "/lag_bytes") > 1024 * 1024,
                  "the slow replica caught up as fast as the others: was it slow at all? " << later.dump());

    // Never cut off while its bytes are retained: same connection, still online.
    CHECK(replica_field(later, slow.port(), "state") == "online");
    CHECK(relay.accepted_connections() == 1);
    // Once the link is fast again it catches up on the same connection, with no resync.
    relay.set_downstream_rate(0);
    wait_keyspace_equal(c.master, slow, 60);
    const SyncCounters after = sync_counters(c.proxy->status());
    CHECK_MESSAGE(after.sync_full == before.sync_full, before.describe() << " -> " << after.describe());
    CHECK(after.sync_partial_ok == before.sync_partial_ok);
    CHECK(relay.accepted_connections() == 1);
    CHECK(slow.log_count("Full resync from master") == 1);
    CHECK(slow.log_count("Connection with master lost") == 0);
    check_clean_shutdown(*c.proxy);
}
