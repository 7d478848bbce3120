// What an operator runs the proxy with: a config file, a JSON log file reopened on SIGHUP
// (logrotate), and a Prometheus scrape that agrees with /status.
#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/support/cluster.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/sandbox.h"
#include "tests/support/test_context.h"

using namespace psync::test;
using nlohmann::json;

namespace {

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// The value of an unlabelled sample in Prometheus text, or -1.
double metric(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
}

}  // namespace

TEST_CASE("operations: config file, JSON log file reopened on SIGHUP, /metrics agrees with /status") {
    Sandbox sandbox;
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    const std::string log_file = sandbox.subdir("logs") + "/psync-proxy.log";
    const std::string conf = sandbox.subdir("conf") + "/psync-proxy.conf";
    {
        std::ofstream out(conf);
        out << "# as an operator writes it\n"
            << "upstream 127.0.0.1:" << master.port() << "\n"
            << "log-file " << log_file << "\n"
            << "log-format json\n"
            << "log-level debug\n"   // the flag given below wins
            << "backlog-size 64mb\n";
    }
    ProxyOptions options;
    options.log_level = "info";
    options.extra_args = {"--config", conf};
    ProxyProcess proxy(sandbox, "proxy", master.port(), options);
    proxy.start();
    json s = proxy.wait_snapshot();
    CHECK(json_str(s, "/upstream/address") == "127.0.0.1:" + std::to_string(master.port()));

    RedisServer replica(sandbox, "replica", replica_options(proxy.port()));
    replica.start();
    proxy.wait_replica_online(replica.port());
    RedisClient m = master.client();
    m.command({"SET", "ops", "1"});
    wait_keyspace_equal(master, replica, 30);

    // The log went to the file, one JSON object a line, info and above only (the flag wins).
    std::vector<std::string> lines = read_lines(log_file);
    REQUIRE(lines.size() > 3);
    bool saw_full_resync = false;
    for (const auto& line : lines) {
        json j = json::parse(line);  // throws (and fails) on a line that is not JSON
        CHECK(j.contains("time"));
        CHECK(j.contains("component"));
        CHECK(j["level"] != "debug");
        saw_full_resync |= j["message"].get<std::string>().find("full resync") != std::string::npos;
    }
    CHECK(saw_full_resync);

    // logrotate: move the file away, SIGHUP, and the proxy writes to a new file at the path.
    REQUIRE(std::rename(log_file.c_str(), (log_file + ".1").c_str()) == 0);
    proxy.process().signal(SIGHUP);
    wait_until("the log file reopened after SIGHUP", 10, [&](std::string& state) {
        auto fresh = read_lines(log_file);
        state = std::to_string(fresh.size()) + " lines in the new file";
        return !fresh.empty() && fresh[0].find("reopened") != std::string::npos;
    });
    CHECK(proxy.running());

    // /metrics: the scrape says what /status says.
    s = proxy.status();
    HttpResponse r = http_get(proxy.status_port(), "/metrics");
    REQUIRE(r.status == 200);
    CHECK(metric(r.body, "psync_proxy_upstream_link_up") == 1);
    CHECK(metric(r.body, "psync_proxy_sync_full_total") == json_int(s, "/counters/sync_full"));
    CHECK(metric(r.body, "psync_proxy_snapshot_bytes") == json_int(s, "/snapshot/bytes"));
    CHECK(metric(r.body, "psync_proxy_upstream_syncs_total") == 1);
    CHECK(r.body.find("psync_proxy_replica_state{replica=\"127.0.0.1:" + std::to_string(replica.port()) +
                      "\",state=\"online\"} 1") != std::string::npos);
    CHECK(http_get(proxy.status_port(), "/healthz").status == 200);
    check_clean_shutdown(proxy);
}
