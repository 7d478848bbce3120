// A standby proxy (--standby-of): it mirrors the active's lineage (the same replid, the same
// offsets, the same log bytes), serves replicas from it, says it is the standby in /status,
// INFO, /metrics and /healthz; and when the active is killed it takes over under a new
// replid, keeping the active's as replid2.
#include <doctest/doctest.h>

#include <dirent.h>
#include <signal.h>

#include <map>
#include <optional>

#include "tests/support/cluster.h"
#include "tests/support/compat.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/ports.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// The log bytes a data directory holds, by offset: segment log-<first offset>.seg.
std::map<uint64_t, std::string> log_segments(const std::string& dir) {
    std::map<uint64_t, std::string> out;
    DIR* d = opendir(dir.c_str());
    REQUIRE(d != nullptr);
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind("log-", 0) != 0 || name.size() < 8 || name.substr(name.size() - 4) != ".seg") continue;
        out[std::stoull(name.substr(4, name.size() - 8))] = read_file(dir + "/" + name);
    }
    closedir(d);
    return out;
}

// Bytes [from, to] of the log in `dir` ("" if it does not hold them all).
std::string log_range(const std::string& dir, uint64_t from, uint64_t to) {
    std::string all;
    uint64_t start = 0;
    bool first = true;
    for (auto& [off, bytes] : log_segments(dir)) {
        if (first) start = off;
        else if (start + all.size() != off) return "";  // a gap
        first = false;
        all += bytes;
    }
    if (first || from < start || to + 1 > start + all.size()) return "";
    return all.substr(from - start, to + 1 - from);
}

// Waits until the standby's own master link is aligned with the active's stream.
void wait_aligned(const ProxyProcess& standby) {
    standby.wait_status("the own master link aligned", 60, [&](const json& s, std::string& st) {
        st = json_str(s, "/standby/alignment/state") + " " + json_str(s, "/standby/alignment/last_error");
        return json_str(s, "/standby/alignment/state") == "tracking";
    });
}

// Waits until `proxy` says it is the active; returns its /status.
json wait_active(const ProxyProcess& proxy, double timeout_s) {
    return proxy.wait_status("the standby to take over", timeout_s, [&](const json& s, std::string& st) {
        st = json_str(s, "/standby/state");
        return json_str(s, "/proxy/role") == "active";
    });
}

ProxyOptions standby_options(const ProxyProcess& active, double timeout_s) {
    ProxyOptions o;
    o.extra_args = {"--standby-of", "127.0.0.1:" + std::to_string(active.port()), "--standby-timeout",
                    std::to_string(static_cast<int>(timeout_s))};
    return o;
}

// A SYNC-only master, the active with its replicas, and a standby of it (--standby-timeout 3).
struct StandbyCluster {
    static constexpr double kTimeout = 3;
    ProxiedCluster c;
    std::unique_ptr<ProxyProcess> standby;
    explicit StandbyCluster(int replicas) {
        c.start(replicas, 100);
        standby = std::make_unique<ProxyProcess>(c.sandbox, "standby", c.master.port(), standby_options(*c.proxy, kTimeout));
        standby->start();
    }
};

}  // namespace

TEST_CASE("standby: mirrors the active byte for byte (same replid, same offsets), serves a replica of its own, and says it is the standby") {
    ProxiedCluster c;
    c.start(1, 100);
    ProxyProcess standby(c.sandbox, "standby", c.master.port(), standby_options(*c.proxy, 10));
    standby.start();
    {
        BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
        writer.wait_more_rounds(100);
        // A replica of the standby, while writes go on.
        RedisServerOptions ro = replica_options(standby.port());
        c.replicas.push_back(std::make_unique<RedisServer>(c.sandbox, "replica-of-standby", ro));
        c.replicas.back()->start();
        writer.wait_more_rounds(100);
        writer.stop();
        CHECK_MESSAGE(writer.error().empty(), writer.error());
    }
    c.wait_replicas_equal();
    const json a = c.proxy->status();
    const std::string replid = json_str(a, "/proxy/replid");
    const json b = standby.wait_status("the standby at the active's offset", 30, [&](const json& s, std::string& st) {
        st = "offset " + std::to_string(json_int(s, "/proxy/offset")) + " of " +
             std::to_string(json_int(c.proxy->status(), "/proxy/offset"));
        return json_int(s, "/proxy/offset") == json_int(c.proxy->status(), "/proxy/offset");
    });
    CHECK(json_str(b, "/proxy/replid") == replid);
    CHECK(json_str(b, "/proxy/role") == "standby");
    CHECK(json_str(a, "/proxy/role") == "active");
    CHECK(json_str(b, "/standby/state") == "following");
    CHECK(json_str(b, "/standby/link_state") == "streaming");
    CHECK(a["standby"].is_null());

    // The same bytes at the same offsets: from the standby's first logged byte to the end.
    const uint64_t end = static_cast<uint64_t>(json_int(b, "/proxy/offset"));
    const uint64_t from = static_cast<uint64_t>(json_int(b, "/log/first_offset"));
    REQUIRE(from < end);
    const std::string ours = log_range(standby.data_dir(), from, end);
    const std::string theirs = log_range(c.proxy->data_dir(), from, end);
    MESSAGE("compared " << ours.size() << " log bytes, offsets " << from << "-" << end);
    CHECK(ours.size() == end + 1 - from);
    CHECK_MESSAGE(ours == theirs, "the standby's log differs from the active's");

    // Only the active takes replicas behind a Service: /healthz says which.
    const HttpResponse hb = http_get(standby.status_port(), "/healthz", 3);
    CHECK(hb.status == 503);
    CHECK(hb.body.find("standby") != std::string::npos);
    CHECK(http_get(c.proxy->status_port(), "/healthz", 3).status == 200);
    RedisClient sc = RedisClient::connect(standby.port());
    CHECK(sc.command({"INFO", "server"}).str.find("psync_proxy_role:standby") != std::string::npos);
    CHECK(http_get(standby.status_port(), "/metrics", 3).body.find("psync_proxy_role{role=\"standby\"} 1") !=
          std::string::npos);
    // A standby refreshes its own snapshot within the mirrored lineage (a fork on the master):
    // its log can then be trimmed as the active's is.
    wait_aligned(standby);
    const int64_t snap_before = json_int(b, "/snapshot/offset");
    CHECK_FALSE(sc.command({"BGSAVE"}).is_error());
    const json refreshed = standby.wait_status("the standby's refresh", 30, [&](const json& s, std::string& st) {
        st = json_str(s, "/refresh/state") + " " + json_str(s, "/refresh/last_error");
        return json_int(s, "/refresh/done") >= 1;
    });
    CHECK(json_int(refreshed, "/snapshot/offset") > snap_before);
    CHECK(json_str(refreshed, "/proxy/replid") == replid);
    CHECK(json_str(refreshed, "/proxy/role") == "standby");
    // SYNCs on the master: the active's, the standby's own link (aligned with the active's
    // stream), its refresh.
    CHECK_MESSAGE(c.master.info_int("stats", "sync_full") == 3, standby.status()["standby"].dump());
    // A replica started after the refresh full-resyncs from the standby's new snapshot.
    RedisServerOptions late = replica_options(standby.port());
    c.replicas.push_back(std::make_unique<RedisServer>(c.sandbox, "late-replica-of-standby", late));
    c.replicas.back()->start();
    c.wait_replicas_equal();
    check_clean_shutdown(standby);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("standby: the active SIGKILLed under writes in dbs 0, 1, 5: the standby splices its own master link in, and two replicas pointed at it resume with +CONTINUE, equal to the master") {
    StandbyCluster sc(2);
    ProxiedCluster& c = sc.c;
    ProxyProcess& standby = *sc.standby;
    constexpr double kTimeout = StandbyCluster::kTimeout;
    // A replica of the standby itself: at the takeover it reconnects at once, as Redis replicas
    // do when their master's replid changes, and continues (+CONTINUE <new replid>).
    RedisServer own(c.sandbox, "replica-of-standby", replica_options(standby.port()));
    own.start();
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(50);
    // Its own master link (one SYNC) placed in the active's stream, then tracked.
    wait_aligned(standby);
    writer.wait_more_rounds(50);
    const std::string old_replid = json_str(c.proxy->status(), "/proxy/replid");

    ::kill(c.proxy->process().pid(), SIGKILL);
    const auto killed = Clock::now();
    writer.wait_more_rounds(20);  // writes go on while the active is gone
    const json b = wait_active(standby, kTimeout + 15);
    const double took = seconds_since(killed);
    MESSAGE("the standby took over " << took << " s after the kill (--standby-timeout " << kTimeout << "): "
                                     << b["standby"].dump());
    CHECK(took < kTimeout + 5);
    CHECK(json_str(b, "/standby/state") == "took_over");
    CHECK(b["standby"]["spliced"] == true);
    CHECK(json_str(b, "/standby/replid_taken_over") == old_replid);
    CHECK(json_str(b, "/proxy/replid2") == old_replid);
    CHECK(json_int(b, "/proxy/second_offset") == json_int(b, "/standby/takeover_offset") + 1);
    CHECK(json_str(b, "/proxy/replid") != old_replid);
    CHECK(http_get(standby.status_port(), "/healthz", 3).status == 200);
    // A replica that holds bytes past the takeover point (from the dying active) cannot be
    // continued under the old replid: a full resync. At the point: +CONTINUE <new replid>.
    {
        const int64_t second = json_int(b, "/proxy/second_offset");
        ScriptedReplica past(standby.port());
        past.send("PSYNC " + old_replid + " " + std::to_string(second + 1) + "\r\n");
        CHECK(past.read_line(5).rfind("+FULLRESYNC " + json_str(b, "/proxy/replid"), 0) == 0);
        ScriptedReplica at(standby.port());
        at.send("REPLCONF capa psync2\r\n");
        CHECK(at.read_line(5) == "+OK");
        at.send("PSYNC " + old_replid + " " + std::to_string(second) + "\r\n");
        CHECK(at.read_line(5) == "+CONTINUE " + json_str(b, "/proxy/replid"));
    }

    // The replicas are pointed at the new active and go on where they were.
    for (auto& r : c.replicas) r->client().must({"REPLICAOF", "127.0.0.1", std::to_string(standby.port())});
    writer.wait_more_rounds(100);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    c.wait_replicas_equal(60);
    const json after = standby.status();
    // Full: its own replica's first sync (before the kill) and the probe past the point;
    // partial: the two replicas, its own one, the probe at the point.
    CHECK(json_int(after, "/counters/sync_full") == 2);
    CHECK(json_int(after, "/counters/sync_partial_ok") == 4);
    for (auto& r : c.replicas) {
        CHECK_MESSAGE(r->info_int("stats", "sync_full") == 0, r->name());
        CHECK_MESSAGE(count_log_lines(r->log_path(), "Full resync from master", false) == 1, r->name());
        CHECK_MESSAGE(count_log_lines(r->log_path(), "Master accepted a Partial Resynchronization", false) >= 1, r->name());
    }
    // One SYNC per proxy on the master: the active's, and the standby's own link.
    CHECK(c.master.info_int("stats", "sync_full") == 2);
    wait_keyspace_equal(c.master, own, 60);
    CHECK(count_log_lines(own.log_path(), "Full resync from master", false) == 1);
    CHECK(count_log_lines(own.log_path(), "Master accepted a Partial Resynchronization", false) >= 1);

    // The old active comes back as the standby of the new one, from its data directory: it
    // continues its lineage under the new replid (PSYNC of the old one, within replid2).
    ProxyOptions back = standby_options(standby, 10);
    back.data_dir = c.proxy->data_dir();
    ProxyProcess returned(c.sandbox, "returned", c.master.port(), back);
    returned.start();
    const json r = returned.wait_status("the old active to follow the new one", 30, [&](const json& s, std::string& st) {
        st = json_str(s, "/proxy/role") + " " + json_str(s, "/proxy/replid");
        return json_str(s, "/proxy/replid") == json_str(standby.status(), "/proxy/replid") &&
               json_int(s, "/proxy/offset") == json_int(standby.status(), "/proxy/offset");
    });
    CHECK(json_str(r, "/proxy/role") == "standby");
    CHECK(json_str(r, "/proxy/replid2") == old_replid);
    CHECK(json_int(standby.status(), "/counters/sync_full") == 2);  // it continued, no full resync
    CHECK(json_int(standby.status(), "/counters/sync_partial_ok") == 5);
    CHECK(http_get(returned.status_port(), "/healthz", 3).status == 503);
    check_clean_shutdown(returned);
    check_clean_shutdown(standby);
}

TEST_CASE("standby: a master that refuses PUBLISH: the standby says it is not aligned, and its takeover is a plain new lineage, never a guessed splice") {
    ProxiedCluster c;
    c.start(1, 100);
    // PUBLISH refused for the user everyone connects as (the markers cannot be written).
    c.master.client().must({"ACL", "SETUSER", "default", "-publish"});
    constexpr double kTimeout = 3;
    ProxyProcess standby(c.sandbox, "standby", c.master.port(), standby_options(*c.proxy, kTimeout));
    standby.start();
    RedisServer& replica = *c.replicas[0];
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(50);
    const json failed = standby.wait_status("the alignment to fail", 30, [&](const json& s, std::string& st) {
        st = json_str(s, "/standby/alignment/state");
        return json_int(s, "/standby/alignment/attempts_failed") >= 1;
    });
    MESSAGE("alignment: " << failed["standby"]["alignment"].dump());
    CHECK(json_str(failed, "/standby/alignment/last_error").find("marker") != std::string::npos);
    CHECK(json_str(failed, "/standby/state") == "following");
    const std::string old_replid = json_str(c.proxy->status(), "/proxy/replid");

    ::kill(c.proxy->process().pid(), SIGKILL);
    const auto killed = Clock::now();
    const json b = wait_active(standby, kTimeout + 10);
    const double took = seconds_since(killed);
    MESSAGE("the standby took over " << took << " s after the kill (--standby-timeout " << kTimeout << ")");
    CHECK(took < kTimeout + 5);
    CHECK(b["standby"]["spliced"] == false);
    CHECK(json_str(b, "/standby/replid_taken_over") == old_replid);
    const json after = standby.wait_snapshot(30);
    CHECK(json_str(after, "/proxy/replid") != old_replid);  // a new lineage
    CHECK(http_get(standby.status_port(), "/healthz", 3).status == 200);

    replica.client().must({"REPLICAOF", "127.0.0.1", std::to_string(standby.port())});
    writer.wait_more_rounds(100);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(c.master, replica, 60);
    // The replica full-resynced from the new lineage.
    CHECK(json_int(standby.status(), "/counters/sync_full") == 1);
    check_clean_shutdown(standby);
}

TEST_CASE("standby: the active SIGSTOPped past the timeout, then continued: it reads the takeover marker and stops serving; exactly one active, and the replicas end equal to the master") {
    StandbyCluster sc(1);
    ProxiedCluster& c = sc.c;
    ProxyProcess& standby = *sc.standby;
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    wait_aligned(standby);
    const std::string old_replid = json_str(c.proxy->status(), "/proxy/replid");
    const pid_t active_pid = c.proxy->process().pid();
    ::kill(active_pid, SIGSTOP);
    const auto stopped = Clock::now();
    // A frozen active keeps its sockets open: noticed once it has been silent past its PING
    // period (10 s) plus 2 s, and the timeout.
    const json b = wait_active(standby, 30);
    MESSAGE("the standby took over " << seconds_since(stopped) << " s after SIGSTOP");
    CHECK(b["standby"]["spliced"] == true);
    ::kill(active_pid, SIGCONT);
    // The old active reads the master's stream it had buffered, the takeover marker in it.
    const json a = c.proxy->wait_status("the old active to step down", 20, [&](const json& s, std::string& st) {
        st = json_str(s, "/proxy/role");
        return st == "superseded";
    });
    CHECK(json_str(a, "/proxy/replid") == old_replid);
    CHECK(http_get(c.proxy->status_port(), "/healthz", 3).status == 503);
    CHECK(http_get(standby.status_port(), "/healthz", 3).status == 200);
    // It refuses replicas now; its replica goes to the new active.
    {
        ScriptedReplica probe(c.proxy->port());
        probe.send("PSYNC ? -1\r\n");
        const std::string line = probe.read_line(5);
        CHECK_MESSAGE(line.rfind("-ERR psync-proxy: this lineage was taken over", 0) == 0, line);
    }
    RedisServer& replica = *c.replicas[0];
    replica.client().must({"REPLICAOF", "127.0.0.1", std::to_string(standby.port())});
    writer.wait_more_rounds(100);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(c.master, replica, 60);
    // Exactly one active.
    CHECK(json_str(c.proxy->status(), "/proxy/role") == "superseded");
    CHECK(json_str(standby.status(), "/proxy/role") == "active");
    check_clean_shutdown(standby);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("standby: a pair, each the --standby-of the other, started together: exactly one is active; killed, the other takes over; restarted with the same flags, it follows the new active") {
    ProxiedCluster c;
    c.start(0, 100);  // the cluster's own proxy is not used: the pair replaces it
    c.proxy->stop();
    constexpr double kTimeout = 3;
    // Ports first (a pair names each other), then both start.
    const int pa = pick_free_port(), pb = pick_free_port();
    auto pair_options = [&](int peer, const std::string& dir) {
        ProxyOptions o;
        o.extra_args = {"--standby-of", "127.0.0.1:" + std::to_string(peer), "--standby-timeout",
                        std::to_string(static_cast<int>(kTimeout))};
        o.data_dir = dir;
        return o;
    };
    auto a2 = std::make_unique<ProxyProcess>(c.sandbox, "pair-a", c.master.port(), pair_options(pb, ""));
    auto b2 = std::make_unique<ProxyProcess>(c.sandbox, "pair-b", c.master.port(), pair_options(pa, ""));
    a2->start_on(pa, pick_free_port());
    b2->start_on(pb, pick_free_port());
    auto roles = [&] { return json_str(a2->status(), "/proxy/role") + "/" + json_str(b2->status(), "/proxy/role"); };
    wait_until("one of the pair to become active", 30, [&] {
        const std::string r = roles();
        return r == "active/standby" || r == "standby/active";
    });
    ProxyProcess* active = json_str(a2->status(), "/proxy/role") == "active" ? a2.get() : b2.get();
    ProxyProcess* other = active == a2.get() ? b2.get() : a2.get();
    active->wait_snapshot(30);
    // The other follows it, and aligns a master link of its own.
    wait_aligned(*other);
    sleep_ms(3000);
    CHECK(roles().find("active") != std::string::npos);
    CHECK(json_str(active->status(), "/proxy/role") == "active");  // still exactly one
    CHECK(json_str(other->status(), "/proxy/role") == "standby");

    RedisServer replica(c.sandbox, "replica", replica_options(active->port()));
    replica.start();
    active->wait_replica_online(replica.port());
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(50);

    // The active dies: the other takes over (spliced); the replica goes to it.
    const int dead_port = active->port(), dead_status = active->status_port();
    const std::string dead_dir = active->data_dir();
    ::kill(active->process().pid(), SIGKILL);
    wait_active(*other, kTimeout + 10);
    CHECK(other->status()["standby"]["spliced"] == true);
    replica.client().must({"REPLICAOF", "127.0.0.1", std::to_string(other->port())});

    // The dead one restarts with the same flags: it finds the other active and follows it.
    const int peer_port = other->port();
    ProxyProcess back(c.sandbox, "pair-back", c.master.port(), pair_options(peer_port, dead_dir));
    back.start_on(dead_port, dead_status);
    const json r = back.wait_status("the restarted one to follow", 30, [&](const json& s, std::string& st) {
        st = json_str(s, "/proxy/role") + " " + json_str(s, "/standby/state");
        return json_str(s, "/proxy/replid") == json_str(other->status(), "/proxy/replid");
    });
    CHECK(json_str(r, "/proxy/role") == "standby");
    writer.wait_more_rounds(100);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(c.master, replica, 60);
    CHECK(count_log_lines(replica.log_path(), "Full resync from master", false) == 1);
    CHECK(json_str(other->status(), "/proxy/role") == "active");
    CHECK(json_str(back.status(), "/proxy/role") == "standby");
    check_clean_shutdown(back);
    check_clean_shutdown(*other);
}

TEST_CASE("standby: the active frozen while 32 MB are written, then killed: the standby holds what it was ahead on disk, its memory stays bounded, and it splices all of it in") {
    // Freed memory held in AddressSanitizer's quarantine would look like growth.
    std::optional<ScopedEnv> asan;
    asan.emplace("ASAN_OPTIONS", asan_options_for_memory_measurement());
    StandbyCluster sc(1);
    asan.reset();
    ProxiedCluster& c = sc.c;
    ProxyProcess& standby = *sc.standby;
    constexpr double kTimeout = StandbyCluster::kTimeout;
    wait_aligned(standby);
    const long rss_before = rss_kb(standby.process().pid());
    const pid_t active_pid = c.proxy->process().pid();
    ::kill(active_pid, SIGSTOP);
    // 512 writes of 64 KB in dbs 0, 1 and 5: the master buffers them for the frozen active,
    // the standby's own link receives them.
    RedisClient m = c.master.client();
    const std::string value(64 * 1024, 'v');
    for (int batch = 0; batch < 16; ++batch) {
        std::vector<Command> cmds;
        const int db = ProxiedCluster::kDbs[static_cast<size_t>(batch) % ProxiedCluster::kDbs.size()];
        cmds.push_back({"SELECT", std::to_string(db)});
        for (int i = 0; i < 32; ++i) cmds.push_back({"SET", "big:" + std::to_string(batch) + ":" + std::to_string(i), value});
        m.must_pipeline(cmds);
    }
    const json held = standby.wait_status("the own link 512 writes ahead", 30, [&](const json& s, std::string& st) {
        st = std::to_string(json_int(s, "/standby/alignment/ahead_commands")) + " ahead, " +
             json_str(s, "/standby/alignment/state");
        return json_int(s, "/standby/alignment/ahead_commands") >= 512;
    });
    const long rss_held = rss_kb(standby.process().pid());
    MESSAGE("standby RSS " << rss_before << " KB aligned, " << rss_held << " KB holding 32 MB ahead of the frozen active");
    CHECK(json_str(held, "/standby/alignment/state") == "tracking");
    CHECK_MESSAGE(rss_held < rss_before + 24 * 1024, "the standby grew from " << rss_before << " to " << rss_held << " KB");

    ::kill(active_pid, SIGKILL);
    const json b = wait_active(standby, kTimeout + 20);
    CHECK(b["standby"]["spliced"] == true);
    RedisServer& replica = *c.replicas[0];
    replica.client().must({"REPLICAOF", "127.0.0.1", std::to_string(standby.port())});
    m.must({"SET", "after", "the takeover"});
    wait_keyspace_equal(c.master, replica, 60);
    CHECK(count_log_lines(replica.log_path(), "Full resync from master", false) == 1);
    check_clean_shutdown(standby);
}

TEST_CASE("standby: --standby-of naming the proxy itself: one clear error line, and it serves as the active") {
    ProxiedCluster c;
    c.start(0, 10);
    c.proxy->stop();
    const int port = pick_free_port();
    ProxyOptions o;
    o.extra_args = {"--standby-of", "127.0.0.1:" + std::to_string(port), "--standby-timeout", "1"};
    ProxyProcess self(c.sandbox, "self", c.master.port(), o);
    self.start_on(port, pick_free_port());
    wait_active(self, 20);
    self.wait_snapshot(20);
    CHECK(count_log_lines(self.log_path(), "names this proxy itself", true) == 1);
    RedisServer r(c.sandbox, "replica", replica_options(self.port()));
    r.start();
    wait_keyspace_equal(c.master, r, 30);
    check_clean_shutdown(self);
}

TEST_CASE("standby: a pair whose active is frozen past the timeout: the other takes over, and the old one, continued, follows it as its standby") {
    ProxiedCluster c;
    c.start(0, 100);
    c.proxy->stop();
    const int pa = pick_free_port(), pb = pick_free_port();
    auto pair_options = [&](int peer) {
        ProxyOptions o;
        o.extra_args = {"--standby-of", "127.0.0.1:" + std::to_string(peer), "--standby-timeout", "3"};
        return o;
    };
    ProxyProcess a(c.sandbox, "pair-a", c.master.port(), pair_options(pb));
    ProxyProcess b(c.sandbox, "pair-b", c.master.port(), pair_options(pa));
    a.start_on(pa, pick_free_port());
    b.start_on(pb, pick_free_port());
    wait_until("one of the pair to become active", 30, [&] {
        return (json_str(a.status(), "/proxy/role") == "active") != (json_str(b.status(), "/proxy/role") == "active");
    });
    ProxyProcess& active = json_str(a.status(), "/proxy/role") == "active" ? a : b;
    ProxyProcess& other = &active == &a ? b : a;
    active.wait_snapshot(30);
    wait_aligned(other);
    BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
    writer.wait_more_rounds(50);
    ::kill(active.process().pid(), SIGSTOP);
    wait_active(other, 30);
    ::kill(active.process().pid(), SIGCONT);
    // The old active reads the takeover marker, stops serving, and follows the new one.
    const json back = active.wait_status("the old active to follow the new one", 30, [&](const json& s, std::string& st) {
        st = json_str(s, "/proxy/role") + " " + json_str(s, "/proxy/replid");
        return json_str(s, "/proxy/role") == "standby" &&
               json_str(s, "/proxy/replid") == json_str(other.status(), "/proxy/replid");
    });
    CHECK(count_log_lines(active.log_path(), "follows 127.0.0.1", true) == 1);
    CHECK(http_get(active.status_port(), "/healthz", 3).status == 503);
    RedisServer replica(c.sandbox, "replica", replica_options(other.port()));
    replica.start();
    writer.wait_more_rounds(50);
    writer.stop();
    CHECK_MESSAGE(writer.error().empty(), writer.error());
    wait_keyspace_equal(c.master, replica, 60);
    CHECK(json_str(other.status(), "/proxy/role") == "active");
    CHECK(json_str(active.status(), "/proxy/role") == "standby");
    check_clean_shutdown(active);
    check_clean_shutdown(other);
}
