// Faults at exact points of the upstream link, injected with tests/shim/fault_shim.c:
//
// - A log write that fails (ENOSPC) while a PSYNC master streams: the link is dropped and
//   resumed with PSYNC at the master offset of the last byte committed to the log, so the
//   master resends everything that did not make it to disk. (Before the lineage store had one
//   commit point, the resume offset counted the bytes read, not the bytes logged: the master
//   answered +CONTINUE and the commands in between were lost while every link stayed up.)
// - A name lookup slower than the connect timeout: one lookup at a time, each attempt with its
//   own request, a stale answer ignored. (Before, the retry reused the request still in the
//   thread pool and the proxy crashed.)
#include <doctest/doctest.h>

#include <fstream>

#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/test_context.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// SETs <prefix>:<i> for i in [from, to) in db, pipelined in small groups, so that the proxy
// receives them over many reads.
void write_keys(const RedisServer& master, int db, const std::string& prefix, int from, int to) {
    RedisClient c = master.client();
    c.must({"SELECT", std::to_string(db)});
    for (int i = from; i < to; i += 50) {
        std::vector<Command> cmds;
        for (int k = i; k < std::min(to, i + 50); ++k) {
            cmds.push_back({"SET", prefix + ":" + std::to_string(k), "value-" + std::to_string(k)});
        }
        c.must_pipeline(cmds);
    }
}

void touch(const std::string& path) { std::ofstream(path) << "1"; }

bool exists(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

TEST_CASE("faults: a log write failing with ENOSPC under a PSYNC master: the link resumes at the last committed byte and no write is lost") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master");  // Redis 7 with PSYNC
    master.start();
    const std::string trigger = sandbox.root() + "/fail-next-log-write";
    std::unique_ptr<ProxyProcess> proxy;
    {
        FaultShim shim({{"PSYNC_FAULT_WRITE_TRIGGER", trigger}});
        proxy = std::make_unique<ProxyProcess>(sandbox, "proxy", master.port());
        proxy->start();
    }
    proxy->wait_snapshot();
    RedisServer replica(sandbox, "replica", replica_options(proxy->port()));
    replica.start();
    proxy->wait_replica_online(replica.port());

    // Three batches of 2000 keys in dbs 0 and 3; one log write fails during the second.
    write_keys(master, 0, "batch1", 0, 1000);
    write_keys(master, 3, "batch1", 1000, 2000);
    wait_keyspace_equal(master, replica);
    touch(trigger);
    write_keys(master, 0, "batch2", 0, 1000);
    write_keys(master, 3, "batch2", 1000, 2000);
    wait_until("the failing write to happen", 20, [&] { return !exists(trigger); });
    proxy->wait_status("the upstream link resumed with +CONTINUE", 30, [](const json& st, std::string& state) {
        state = json_str(st, "/upstream/state") + ", partial resyncs " +
                std::to_string(json_int(st, "/counters/upstream_partial_resyncs"));
        return json_int(st, "/counters/upstream_partial_resyncs") >= 1 && json_str(st, "/upstream/state") == "streaming";
    });
    write_keys(master, 0, "batch3", 0, 1000);
    write_keys(master, 3, "batch3", 1000, 2000);

    wait_keyspace_equal(master, replica);
    CHECK(replica.client().must({"SELECT", "0"}).is_error() == false);
    CHECK(replica.client().must({"DBSIZE"}).integer == 3000);
    const json s = proxy->status();
    CHECK_MESSAGE(json_str(s, "/storage/last_error").find("No space left on device") != std::string::npos,
                  json_at(s, "/storage").dump());
    // The master resent what was lost (a partial resync, no second fork), the replica saw a
    // pause only, and the proxy's offset is the master's again.
    CHECK(master.info_int("stats", "sync_full") == 1);
    CHECK(master.info_int("stats", "sync_partial_ok") == 1);
    CHECK(json_int(s, "/upstream/sync_count") == 1);
    CHECK(replica.log_count("Full resync from master") == 1);
    CHECK(replica.log_count("Connection with master lost") == 0);
    wait_until("the proxy's upstream offset at the master's", 10, [&](std::string& state) {
        const int64_t off = master.info_int("replication", "master_repl_offset");
        const int64_t mine = json_int(proxy->status(), "/upstream/offset");
        state = "master " + std::to_string(off) + ", proxy " + std::to_string(mine);
        return mine == off;
    });
    check_clean_shutdown(*proxy);
}

TEST_CASE("faults: a name lookup slower than the connect timeout: one lookup at a time, the stale answer ignored, then a clean start") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    {
        RedisClient c = master.client();
        c.must({"SET", "before", "the proxy"});
    }
    // Two lookups answer after 5 s; the timeout is 2 s. The first attempt times out while its
    // lookup still runs; the retry waits for it instead of starting a second one over it.
    ProxyOptions options;
    options.upstream_host = "localhost";
    options.extra_args = {"--upstream-connect-timeout", "2"};
    std::unique_ptr<ProxyProcess> proxy;
    {
        FaultShim shim({{"PSYNC_FAULT_GETADDRINFO_DELAY_MS", "5000"}, {"PSYNC_FAULT_GETADDRINFO_DELAY_COUNT", "2"}});
        proxy = std::make_unique<ProxyProcess>(sandbox, "proxy", master.port(), options);
        proxy->start();
    }
    CHECK(json_str(proxy->status(), "/upstream/state") == "resolving");
    proxy->wait_snapshot(40);
    CHECK(proxy->running());
    CHECK(count_log_lines(proxy->log_path(), "looking up localhost timed out after") >= 1);
    CHECK(count_log_lines(proxy->log_path(), "waiting for an earlier lookup of localhost to finish") >= 1);
    CHECK(json_int(proxy->status(), "/upstream/sync_count") == 1);

    RedisServer replica(sandbox, "replica", replica_options(proxy->port()));
    replica.start();
    master.client().must({"SET", "after", "the lookups"});
    wait_keyspace_equal(master, replica);
    check_clean_shutdown(*proxy);
}
