// A randomized chaos run: the faults of the other fault scenarios mixed at random under
// steady writes to dbs 0, 1 and 5, for a bounded time; at the end every replica's keyspace
// must equal the master's, and the proxy must never have died on its own.
//
// PSYNC_CHAOS_SEED=<n> replays a sequence of faults (the timing is real time, so a replay is
// close, not exact); PSYNC_CHAOS_SECONDS=<n> sets how long faults are injected (default 40).
// The seed is printed at the start.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/tcp_relay.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

uint64_t env_u64(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    return std::strtoull(v, nullptr, 10);
}

}  // namespace

TEST_CASE("faults: chaos: random replica, link, master and proxy faults under writes, then every replica equal to the master") {
    const uint64_t seed = env_u64("PSYNC_CHAOS_SEED", static_cast<uint64_t>(
        std::chrono::system_clock::now().time_since_epoch().count()) % 1000000007ull);
    const double duration = static_cast<double>(env_u64("PSYNC_CHAOS_SECONDS", 40));
    std::cerr << "chaos: seed " << seed << " (PSYNC_CHAOS_SEED=" << seed << " to replay), " << duration << " s\n";
    MESSAGE("chaos seed " << seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
    auto pause_ms = [&](int lo, int hi) { return lo + pick(hi - lo + 1); };

    ProxiedCluster c;
    c.start(0, 60);
    // Three replicas: one direct, two behind relays whose links can be cut or slowed.
    TcpRelay relay_a(c.proxy->port()), relay_b(c.proxy->port());
    c.replicas.push_back(std::make_unique<RedisServer>(c.sandbox, "replica-direct", replica_options(c.proxy->port())));
    c.replicas.push_back(std::make_unique<RedisServer>(c.sandbox, "replica-relay-a", replica_options(relay_a.port())));
    c.replicas.push_back(std::make_unique<RedisServer>(c.sandbox, "replica-relay-b", replica_options(relay_b.port())));
    for (auto& r : c.replicas) r->start();
    for (auto& r : c.replicas) c.proxy->wait_replica_online(r->port());
    TcpRelay* relays[] = {&relay_a, &relay_b};

    std::unique_ptr<BackgroundWriter> writer;
    int writer_generation = 0;
    auto ensure_writer = [&] {
        if (writer && writer->error().empty()) return;
        writer.reset();
        try {
            writer = std::make_unique<BackgroundWriter>(c.master.port(), ProxiedCluster::kDbs,
                                                        "chaos" + std::to_string(writer_generation++));
        } catch (const std::exception&) {
            writer.reset();  // the master is down: later
        }
    };
    ensure_writer();

    std::ostringstream journal;  // what was done when, printed on failure
    const auto t0 = Clock::now();
    auto note = [&](const std::string& what) {
        journal << "  " << static_cast<int>(seconds_since(t0) * 1000) << " ms: " << what << "\n";
    };
    int proxy_restarts = 0, master_restarts = 0;

    while (seconds_since(t0) < duration) {
        REQUIRE_MESSAGE(c.proxy->running(), "psync-proxy died on its own; seed " << seed << "\n" << journal.str());
        ensure_writer();
        sleep_ms(pause_ms(300, 1200));
        const int fault = pick(10);
        switch (fault) {
            case 0:
            case 1: {  // cut a replica's link
                const int i = pick(2);
                note("cut the links of relay " + std::to_string(i) + ": " + std::to_string(relays[i]->cut_all()));
                break;
            }
            case 2: {  // SIGKILL a replica, restart it a bit later
                RedisServer& r = *c.replicas[static_cast<size_t>(pick(3))];
                note("SIGKILL " + r.name());
                r.process().signal(SIGKILL);
                r.process().wait_exit(10);
                sleep_ms(pause_ms(200, 1500));
                r.start();
                note("restarted " + r.name());
                break;
            }
            case 3: {  // freeze a replica
                RedisServer& r = *c.replicas[static_cast<size_t>(pick(3))];
                const int ms = pause_ms(500, 3000);
                note("SIGSTOP " + r.name() + " for " + std::to_string(ms) + " ms");
                r.process().signal(SIGSTOP);
                sleep_ms(ms);
                r.process().signal(SIGCONT);
                break;
            }
            case 4: {  // slow a relayed replica down for a while
                const int i = pick(2);
                const int ms = pause_ms(1000, 3000);
                note("relay " + std::to_string(i) + " at 32 KB/s for " + std::to_string(ms) + " ms");
                relays[i]->set_downstream_rate(32 * 1024);
                sleep_ms(ms);
                relays[i]->set_downstream_rate(0);
                break;
            }
            case 5: {  // the master drops the proxy's link
                try {
                    Reply r = c.master.client().command({"CLIENT", "KILL", "TYPE", "replica"});
                    note("master: CLIENT KILL TYPE replica -> " + r.describe());
                } catch (const std::exception& e) {
                    note(std::string("master: CLIENT KILL failed: ") + e.what());
                }
                break;
            }
            case 6: {  // the master restarts cleanly (SHUTDOWN SAVE) or crashes after a SAVE
                if (master_restarts >= 3) break;
                ++master_restarts;
                writer.reset();
                if (pick(2) == 0) {
                    note("master SHUTDOWN SAVE");
                    c.master.shutdown_save();
                } else {
                    note("master SAVE (" + c.master.client().command({"SAVE"}).describe() + "), then SIGKILL");
                    c.master.process().signal(SIGKILL);
                    c.master.process().wait_exit(10);
                }
                sleep_ms(pause_ms(200, 1500));
                c.master.start();
                note("master restarted");
                break;
            }
            case 7: {  // the proxy crashes and restarts on the same --dir
                if (proxy_restarts >= 3) break;
                ++proxy_restarts;
                note("proxy SIGKILL");
                c.proxy->process().signal(SIGKILL);
                c.proxy->process().wait_exit(10);
                sleep_ms(pause_ms(100, 1000));
                c.proxy->start();
                note("proxy restarted");
                break;
            }
            case 8: {  // the proxy stops cleanly and restarts
                if (proxy_restarts >= 3) break;
                ++proxy_restarts;
                const int code = c.proxy->stop();
                note("proxy SIGTERM -> exit " + std::to_string(code));
                CHECK_MESSAGE(code == 0, "psync-proxy exited with " << code << " on SIGTERM; seed " << seed);
                c.proxy->start();
                note("proxy restarted");
                break;
            }
            default:
                note("quiet");
                break;
        }
    }

    // Calm: everything up, links fast, writes stopped; then every replica converges.
    note("end of faults");
    for (auto* relay : relays) relay->set_downstream_rate(0);
    for (auto& r : c.replicas) {
        r->process().signal(SIGCONT);
        if (!r->running()) r->start();
    }
    writer.reset();
    MESSAGE("chaos journal (seed " << seed << "):\n" << journal.str());
    REQUIRE_MESSAGE(c.proxy->running(), "psync-proxy died on its own; seed " << seed << "\n" << journal.str());
    c.proxy->wait_snapshot(60);
    for (auto& r : c.replicas) c.proxy->wait_replica_online(r->port(), 60);
    c.wait_replicas_equal(60);
    const json s = c.proxy->status();
    for (auto& r : c.replicas) {
        CHECK_MESSAGE(r->info_field("replication", "master_replid") == json_str(s, "/proxy/replid"), r->name());
        CHECK(r->info_field("replication", "master_link_status") == "up");
    }
    CHECK(c.master.keyspace().size() > 100);
    check_clean_shutdown(*c.proxy);
}
