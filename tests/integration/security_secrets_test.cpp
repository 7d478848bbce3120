// Passwords out of the process list: --requirepass and --masterauth given as flags are
// overwritten in the proxy's argv (what /proc/<pid>/cmdline and ps show) with one warning;
// --requirepass-file and --masterauth-file read them from files (a Kubernetes Secret mounted
// as a volume), and a missing or empty file stops the proxy at start with one line naming it.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "tests/support/fault_helpers.h"
#include "tests/support/keyspace.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_master.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

#ifndef PSYNC_PROXY_BIN
#error "PSYNC_PROXY_BIN must be defined by the build"
#endif

using namespace psync::test;
using nlohmann::json;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string write_secret(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
    ::chmod(path.c_str(), 0600);
    return path;
}

// A SYNC-only master with data in dbs 0, 1 and 5, then a password.
void start_master_with_password(RedisServer& master, const std::string& password) {
    master.start();
    RedisClient m = master.client();
    for (int db : {0, 1, 5}) fill_dataset(m, db, 30);
    m.must({"CONFIG", "SET", "requirepass", password});
}

void drop_password(RedisServer& master, const std::string& password) {
    RedisClient c = master.client();
    c.must({"AUTH", password});
    c.must({"CONFIG", "SET", "requirepass", ""});
}

std::string reply_line(int port, const std::string& bytes) {
    ScriptedReplica conn(port);
    conn.send(bytes);
    return conn.read_line(5);
}

}  // namespace

TEST_CASE("security: --requirepass and --masterauth given as flags do not show in /proc/<pid>/cmdline, and one warning names the -file flags") {
    Sandbox sandbox;
    const std::string requirepass = "rp-Argv-Secret-4711", masterauth = "ma-Argv-Secret-0815";
    RedisServer master(sandbox, "master", sync_only_master_options());
    start_master_with_password(master, masterauth);
    ProxyOptions o;
    o.requirepass = requirepass;
    o.masterauth = masterauth;
    ProxyProcess proxy(sandbox, "proxy", master.port(), o);
    proxy.start();
    proxy.wait_snapshot();  // it did authenticate to the master with the password

    const std::string cmdline = slurp("/proc/" + std::to_string(proxy.process().pid()) + "/cmdline");
    INFO("cmdline: " << cmdline);
    CHECK(cmdline.find("--requirepass") != std::string::npos);  // the flags are there, their values are not
    CHECK(cmdline.find(requirepass) == std::string::npos);
    CHECK(cmdline.find(masterauth) == std::string::npos);
    CHECK(count_log_lines(proxy.log_path(), "given on the command line", true) == 1);
    CHECK(grep_log(proxy.log_path(), "given on the command line").find("--requirepass-file") != std::string::npos);
    const std::string log = slurp(proxy.log_path());
    CHECK(log.find(requirepass) == std::string::npos);
    CHECK(log.find(masterauth) == std::string::npos);

    // The password still works: a Redis 7 replica with masterauth gets the data.
    CHECK(reply_line(proxy.port(), multibulk({"AUTH", requirepass})) == "+OK");
    RedisServerOptions ro = replica_options(proxy.port());
    ro.extra_config = {"masterauth " + requirepass};
    RedisServer replica(sandbox, "replica", ro);
    replica.start();
    proxy.wait_replica_online(replica.port());
    drop_password(master, masterauth);
    wait_keyspace_equal(master, replica);
    check_clean_shutdown(proxy);
}

TEST_CASE("security: --requirepass-file and --masterauth-file: passwords from files, trailing newline dropped, never in argv") {
    Sandbox sandbox;
    const std::string requirepass = "rp-File-Secret-1234", masterauth = "ma-File-Secret-5678";
    const std::string secrets = sandbox.subdir("secrets");
    const std::string rp_file = write_secret(secrets + "/requirepass", requirepass + "\n");
    const std::string ma_file = write_secret(secrets + "/masterauth", masterauth);  // no newline: fine too
    RedisServer master(sandbox, "master", sync_only_master_options());
    start_master_with_password(master, masterauth);
    ProxyOptions o;
    o.extra_args = {"--requirepass-file", rp_file, "--masterauth-file", ma_file};
    ProxyProcess proxy(sandbox, "proxy", master.port(), o);
    proxy.start();
    proxy.wait_snapshot();

    const std::string cmdline = slurp("/proc/" + std::to_string(proxy.process().pid()) + "/cmdline");
    CHECK(cmdline.find(requirepass) == std::string::npos);
    CHECK(cmdline.find(masterauth) == std::string::npos);
    CHECK(count_log_lines(proxy.log_path(), "given on the command line") == 0);
    CHECK(reply_line(proxy.port(), "PING\r\n") == "-NOAUTH Authentication required.");
    CHECK(reply_line(proxy.port(), multibulk({"AUTH", requirepass + "\n"})).rfind("-WRONGPASS", 0) == 0);
    CHECK(reply_line(proxy.port(), multibulk({"AUTH", requirepass})) == "+OK");
    RedisServerOptions ro = replica_options(proxy.port());
    ro.extra_config = {"masterauth " + requirepass};
    RedisServer replica(sandbox, "replica", ro);
    replica.start();
    proxy.wait_replica_online(replica.port());
    drop_password(master, masterauth);
    wait_keyspace_equal(master, replica);
    check_clean_shutdown(proxy);
}

TEST_CASE("security: a missing or empty password file, or a password given two ways, stops the proxy with one line naming it") {
    Sandbox sandbox;
    const std::string dir = sandbox.subdir("bad");
    const std::string empty = write_secret(dir + "/empty", "\n");
    const std::string good = write_secret(dir + "/good", "pw\n");
    struct Case {
        std::vector<std::string> args;
        std::string says;
    };
    const std::vector<Case> cases = {
        {{"--requirepass-file", dir + "/missing"}, "--requirepass-file: cannot read " + dir + "/missing: No such file or directory"},
        {{"--masterauth-file", empty}, "--masterauth-file: " + empty + " is empty"},
        {{"--requirepass-file", dir}, "--requirepass-file: cannot read " + dir},
        {{"--requirepass", "x", "--requirepass-file", good}, "--requirepass-file: cannot be given with requirepass"},
    };
    int i = 0;
    for (const auto& k : cases) {
        CAPTURE(k.says);
        const std::string out = dir + "/run" + std::to_string(i++) + ".log";
        std::vector<std::string> argv = {PSYNC_PROXY_BIN, "--upstream", "127.0.0.1:1", "--dir", dir + "/data",
                                         "--status-port", "0"};
        argv.insert(argv.end(), k.args.begin(), k.args.end());
        CHECK(run_command(argv, out, 10) == 2);
        const std::string text = slurp(out);
        CHECK_MESSAGE(text.find(k.says) != std::string::npos, text);
        CHECK_MESSAGE(std::count(text.begin(), text.end(), '\n') == 1, text);
    }
}
