// Faults of the proxy itself: killed with SIGKILL and restarted on the same --dir, its data
// directory full (a small RLIMIT_FSIZE makes writes fail with EFBIG, as a full disk does;
// chmod would not stop root), and SIGTERM.
//
// What survives a restart: nothing of the data directory. A restarted proxy removes what an
// earlier run left there (snapshot-*.rdb, *.tmp, log-*.seg: a half-written segment or snapshot
// is never looked at, let alone served), takes a fresh SYNC from its master and starts a new
// lineage (a new replid); its replicas, whose PSYNC names the old replid, full-resync from the
// new snapshot. Counters and /status start over. The replicas keep their data meanwhile.
#include <doctest/doctest.h>

#include <csignal>
#include <algorithm>
#include <fstream>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/tcp_relay.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << bytes;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
    return out;
}

// Every file of the data directory is a complete snapshot of the current lineage or a log
// segment: no temp file, no other snapshot.
void check_data_dir_clean(const ProxyProcess& proxy, const json& status) {
    const std::string replid = json_str(status, "/proxy/replid");
    for (const auto& name : dir_entries(proxy.data_dir())) {
        if (name.rfind("log-", 0) == 0 && ends_with(name, ".seg")) continue;
        if (name == "manifest.json" || name == "commit.rec") continue;  // the directory's description
        CHECK_MESSAGE(name == "snapshot-" + replid + ".rdb", "unexpected file in the data directory: " << name);
    }
    const std::string snap = proxy.data_dir() + "/snapshot-" + replid + ".rdb";
    CHECK_MESSAGE(static_cast<int64_t>(read_file(snap).size()) == json_int(status, "/snapshot/bytes"),
                  "the snapshot file is not the size /status gives");
}

bool connect_refused(int port) {
    try {
        RedisClient::connect(port, 1.0).command({"PING"});
        return false;
    } catch (const std::exception&) {
        return true;
    }
}

}  // namespace

TEST_CASE("faults: the proxy killed with SIGKILL and restarted on the same --dir reopens its lineage without torn tails or stray files, its replicas resume, then follow the new SYNC once") {
    ProxiedCluster c;
    c.start(2);
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(40);
    const json s1 = c.proxy->status();
    const std::string replid1 = json_str(s1, "/proxy/replid");
    const std::string dir = c.proxy->data_dir();

    c.proxy->process().signal(SIGKILL);
    REQUIRE(c.proxy->process().wait_exit(10).has_value());
    const std::vector<std::string> left = dir_entries(dir);
    CHECK_MESSAGE(std::find(left.begin(), left.end(), "snapshot-" + replid1 + ".rdb") != left.end(), join(left));
    // What a crash in the middle of writes leaves: a download cut short, a snapshot and a
    // segment torn mid-write (a half command at the end).
    const std::string snapshot1 = read_file(dir + "/snapshot-" + replid1 + ".rdb");
    write_file(dir + "/snapshot.rdb.tmp", snapshot1.substr(0, snapshot1.size() / 2));
    write_file(dir + "/snapshot-0123456789abcdef0123456789abcdef01234567.rdb", snapshot1.substr(0, 100));
    write_file(dir + "/log-999999999.seg", multibulk({"SET", "torn", "write"}).substr(0, 20));
    for (const auto& name : left) {
        if (name.rfind("log-", 0) == 0) {
            std::ofstream f(dir + "/" + name, std::ios::binary | std::ios::app);
            f << "*3\r\n$3\r\nSET\r\n$4\r\ntorn";  // a torn append at the end of a real segment
        }
    }
    writer.wait_more_rounds(60);  // the master moves on while the proxy is down
    for (auto& r : c.replicas) {
        wait_until(r->name() + " to see its master link down", 15, [&] {
            return r->info_field("replication", "master_link_status") == "down";
        });
    }

    c.proxy->start();  // same ports, same --dir
    // The lineage of the earlier run is reopened and served (a SYNC-only master cannot be
    // resumed, so a new SYNC follows): the replicas resume with +CONTINUE meanwhile.
    CHECK(count_log_lines(c.proxy->log_path(), "reopened lineage " + replid1) == 1);
    CHECK_MESSAGE(count_log_lines(c.proxy->log_path(), "removed what it does not name") == 1,
                  grep_log(c.proxy->log_path(), "reopened"));
    const json s2 = c.proxy->wait_status("the new lineage from the new SYNC", 60, [&](const json& st, std::string& state) {
        state = json_str(st, "/proxy/replid") + " " + sync_counters(st).describe();
        return json_str(st, "/proxy/replid") != replid1 && json_int(st, "/upstream/sync_count") >= 1;
    });
    const std::string replid2 = json_str(s2, "/proxy/replid");
    for (auto& r : c.replicas) c.proxy->wait_replica_online(r->port());
    writer.wait_more_rounds(40);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    c.wait_replicas_equal();

    const json s = c.proxy->status();
    const SyncCounters after = sync_counters(s);
    // The replicas came back into the reopened lineage, then full-resynced once into the new one.
    CHECK_MESSAGE(after.sync_full == 2, after.describe());
    CHECK(after.upstream_syncs == 1);
    for (auto& r : c.replicas) {
        CHECK(r->log_count("Full resync from master: " + replid2) == 1);
        CHECK(r->info_field("replication", "master_replid") == replid2);
        CHECK(r->keyspace().count({0, "torn"}) == 0);
    }
    check_data_dir_clean(*c.proxy, s);
    for (const auto& name : dir_entries(dir)) CHECK_MESSAGE(name != "log-999999999.seg", join(dir_entries(dir)));
    // The master served two SYNCs in all: one per proxy run.
    CHECK(c.master.info_int("stats", "sync_full") == 2);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("faults: a full data directory: a clear error in the log and /status, replicas online go on, no corrupt file, recovery") {
    ProxiedCluster c;
    constexpr uint64_t kLimit = 1 << 20;  // largest file the proxy may write
    ProxyOptions options;
    options.file_size_limit = kLimit;
    options.log_level = "info";  // the log file is under the limit too
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), options);
    c.start(2, 50);
    const json s1 = c.proxy->status();
    const std::string replid1 = json_str(s1, "/proxy/replid");
    CHECK(json_at(s1, "/storage/ok") == true);
    CHECK(json_str(s1, "/storage/last_error") == "");
    const Keyspace before = c.master.keyspace();

    // More than the limit through the log: the append fails, the link is dropped; the next
    // SYNC's RDB is over the limit too, so storing the snapshot fails as well.
    auto big_value = [](int i) { return incompressible(5000, static_cast<uint64_t>(i)); };
    {
        RedisClient m = c.master.client();
        std::vector<Command> cmds = {{"SELECT", "1"}};
        for (int i = 0; i < 300; ++i) cmds.push_back({"SET", "big:" + std::to_string(i), big_value(i)});
        m.must_pipeline(cmds);
    }
    const json failing = c.proxy->wait_status("the snapshot write to fail", 30, [](const json& s, std::string&) {
        return json_str(s, "/storage/last_error").find("cannot write the snapshot") != std::string::npos ||
               json_str(s, "/upstream/last_error").find("snapshot") != std::string::npos;
    });
    const std::string log = c.proxy->log_path();
    CHECK_MESSAGE(count_log_lines(log, "cannot append to the replication log", true) >= 1, grep_log(log, "storage"));
    CHECK_MESSAGE(count_log_lines(log, "File too large", true) >= 1, grep_log(log, "ERROR"));
    CHECK(json_at(failing, "/storage/ok") == false);
    CHECK(json_str(failing, "/storage/last_error").find("File too large") != std::string::npos);
    CHECK(json_str(failing, "/upstream/last_error") != "");
    CHECK(json_at(failing, "/upstream/link_up") == false);
    // No partial snapshot: only the complete one of the current lineage.
    wait_until("no temp file in the data directory", 10, [&](std::string& state) {
        state = join(dir_entries(c.proxy->data_dir()));
        for (const auto& n : dir_entries(c.proxy->data_dir()))
            if (ends_with(n, ".tmp")) return false;
        return true;
    });
    check_data_dir_clean(*c.proxy, c.proxy->status());

    // The replicas stay online on the first lineage, and what they hold is right: the data
    // from before, and of the big keys only whole, correct values.
    const json mid = c.proxy->status();
    CHECK(json_str(mid, "/proxy/replid") == replid1);
    for (auto& r : c.replicas) {
        CHECK(replica_field(mid, r->port(), "state") == "online");
        CHECK(r->info_field("replication", "master_link_status") == "up");
        const Keyspace ks = r->keyspace();
        int big = 0;
        for (const auto& [key, entry] : ks) {
            if (key.first == 1 && key.second.rfind("big:", 0) == 0) {
                ++big;
                CHECK(entry.value == "\"" + big_value(std::stoi(key.second.substr(4))) + "\"");
            } else {
                CHECK_MESSAGE(before.count(key) == 1, r->name() << " has " << key.second << " that it should not");
            }
        }
        CHECK(static_cast<int64_t>(ks.size()) - big == static_cast<int64_t>(before.size()));
    }

    // Room again: the proxy recovers by itself.
    set_file_size_limit(c.proxy->process().pid(), std::nullopt);
    const json s = c.proxy->wait_status("a new lineage once writes succeed", 60, [&](const json& st, std::string&) {
        return json_str(st, "/proxy/replid") != replid1 && json_str(st, "/upstream/state") == "streaming";
    });
    CHECK(json_at(s, "/storage/ok") == true);
    c.wait_replicas_equal();
    check_data_dir_clean(*c.proxy, c.proxy->status());
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("faults: SIGTERM with replicas online, one mid-transfer, under writes: exit 0 within a few seconds") {
    ProxiedCluster c;
    fill_big_values(c.master, 100, 10000);
    c.start(1);
    TcpRelay relay(c.proxy->port());
    relay.set_downstream_rate(100'000);  // a 1 MB snapshot takes 10 s: still in transfer
    RedisServer slow(c.sandbox, "slow", replica_options(relay.port()));
    slow.start();
    wait_until("the slow replica loading the snapshot", 20, [&] {
        const std::string info = slow.info("replication");
        const std::string read = info_value(info, "master_sync_read_bytes");
        return info_value(info, "master_sync_in_progress") == "1" && !read.empty() && std::stoll(read) > 0;
    });
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(30);

    const int port = c.proxy->port();
    const auto start = Clock::now();
    c.proxy->process().signal(SIGTERM);
    const auto code = c.proxy->process().wait_exit(5);
    const double took = seconds_since(start);
    REQUIRE_MESSAGE(code.has_value(), "psync-proxy still running 5 s after SIGTERM");
    CHECK_MESSAGE(*code == 0, "exit code " << *code);
    CHECK_MESSAGE(took < 3.0, "took " << took << " s to exit");
    CHECK(connect_refused(port));
    CHECK_MESSAGE(count_log_lines(c.proxy->log_path(), "Sanitizer") == 0, grep_log(c.proxy->log_path(), "Sanitizer"));
    for (const auto& n : dir_entries(c.proxy->data_dir())) CHECK_MESSAGE(!ends_with(n, ".tmp"), n);
    // The replicas saw their link close (not a hang until their timeout).
    wait_until("the online replica to see the link down", 10, [&] {
        return c.replicas[0]->info_field("replication", "master_link_status") == "down";
    });
    writer.stop();
}

TEST_CASE("faults: SIGTERM while the RDB downloads and a SYNC client waits: exit 0 at once, no temp file left") {
    Sandbox sandbox;
    ScriptedMaster legacy;
    ProxyProcess proxy(sandbox, "proxy", legacy.port());
    proxy.start();
    legacy.accept_client();
    legacy.serve_until_sync();
    const std::string rdb = "REDIS0006" + std::string(100000, '\0');
    legacy.send("$" + std::to_string(rdb.size()) + "\r\n" + rdb.substr(0, 50000));
    proxy.wait_status("the download in progress", 10, [](const json& s, std::string&) {
        return json_str(s, "/upstream/state") == "transfer";
    });
    // A 2.6-style replica waiting for the snapshot (held with "\n" keepalives).
    ScriptedReplica waiting(proxy.port());
    waiting.send("SYNC\r\n");
    wait_until("the SYNC client held with keepalives", 5, [&] { return !waiting.read_for(0.3).empty(); });
    bool downloading = false;
    for (const auto& n : dir_entries(proxy.data_dir())) downloading |= ends_with(n, ".tmp");
    REQUIRE_MESSAGE(downloading, "no temp file while the RDB downloads: " << join(dir_entries(proxy.data_dir())));

    const auto start = Clock::now();
    proxy.process().signal(SIGTERM);
    const auto code = proxy.process().wait_exit(5);
    REQUIRE_MESSAGE(code.has_value(), "psync-proxy still running 5 s after SIGTERM");
    CHECK(*code == 0);
    CHECK(seconds_since(start) < 3.0);
    CHECK(waiting.wait_closed(5));
    CHECK(legacy.wait_client_closed(5));
    const std::vector<std::string> left = dir_entries(proxy.data_dir());
    for (const auto& n : left) {
        CHECK_MESSAGE(!ends_with(n, ".tmp"), "left behind: " << join(left));
        CHECK_MESSAGE(n.rfind("snapshot-", 0) != 0, "an interrupted download became a snapshot: " << join(left));
    }
    CHECK_MESSAGE(count_log_lines(proxy.log_path(), "Sanitizer") == 0, grep_log(proxy.log_path(), "Sanitizer"));
}
