#include "tests/support/redis_server.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "tests/support/ports.h"
#include "tests/support/sandbox.h"
#include "tests/support/test_context.h"

namespace psync::test {

RedisServerOptions sync_only_master_options() {
    RedisServerOptions o;
    o.sync_only = true;
    return o;
}

RedisServerOptions replica_options(int master_port) {
    RedisServerOptions o;
    o.replicaof_port = master_port;
    return o;
}

RedisServer::RedisServer(Sandbox& sandbox, std::string name, RedisServerOptions options)
    : sandbox_(sandbox), name_(std::move(name)), options_(std::move(options)) {
    dir_ = sandbox_.subdir(name_);
    sandbox_.watch_log(name_ + " redis.log", log_path());
    sandbox_.watch_log(name_ + " stdout", dir_ + "/stdout.log");
}

RedisServer::~RedisServer() { process_.stop(10.0); }

void RedisServer::write_config() const {
    std::ofstream f(dir_ + "/redis.conf", std::ios::trunc);
    f << "port " << port_ << "\n"
      << "bind 127.0.0.1\n"
      << "daemonize no\n"
      << "dir " << dir_ << "\n"
      << "logfile " << log_path() << "\n"
      << "save \"\"\n"
      << "appendonly no\n"
      << "repl-diskless-sync no\n"
      << "repl-diskless-load disabled\n"
      // Redis 7 waits up to shutdown-timeout for replicas to ACK before exiting; the proxy is a
      // SYNC (pre-PSYNC) replica that never ACKs, so a master would always wait 10 s.
      << "shutdown-timeout 0\n"
      // DEBUG SLEEP and friends, for fault injection (loopback clients only).
      << "enable-debug-command local\n";
    if (options_.sync_only) f << "rename-command PSYNC \"\"\n";
    if (options_.replicaof_port) f << "replicaof 127.0.0.1 " << *options_.replicaof_port << "\n";
    for (const auto& line : options_.extra_config) f << line << "\n";
    if (!f) throw std::runtime_error("cannot write " + dir_ + "/redis.conf");
}

std::string RedisServer::wait_ready(double timeout_s) {
    const auto start = Clock::now();
    std::string why = "no answer yet";
    while (seconds_since(start) < timeout_s) {
        if (!process_.running())
            return "redis-server exited with code " + std::to_string(process_.exit_code().value_or(-1));
        try {
            Reply r = RedisClient::connect(port_, 1.0).command({"PING"});
            if (r.str == "PONG" || (r.is_error() && r.str.rfind("LOADING", 0) == 0)) return "";
            why = "PING -> " + r.describe();
        } catch (const std::exception& e) {
            why = e.what();
        }
        sleep_ms(20);
    }
    return "not ready after " + std::to_string(timeout_s) + " s: " + why;
}

void RedisServer::start() {
    static const std::string binary = find_executable("redis-server");
    const bool first_start = port_ == 0;
    for (int attempt = 1;; ++attempt) {
        if (first_start) port_ = pick_free_port();
        write_config();
        process_.spawn({binary, dir_ + "/redis.conf"}, dir_ + "/stdout.log");
        std::string why = wait_ready(15.0);
        if (why.empty()) return;
        process_.stop(5.0);
        // Another process may have taken the port between pick_free_port() and bind.
        if (first_start && attempt < 3) continue;
        sandbox_.print_logs(20);
        FAIL(name_ << " (redis-server, port " << port_ << ", dir " << dir_ << ") did not start: " << why);
    }
}

int RedisServer::stop() { return process_.stop(15.0); }

void RedisServer::shutdown_save() {
    try {
        Reply r = client().command({"SHUTDOWN", "SAVE"});
        // On success the server closes the connection without replying.
        if (r.is_error()) FAIL(name_ << ": SHUTDOWN SAVE -> " << r.describe());
    } catch (const std::runtime_error&) {
        // Connection closed by the shutdown: expected.
    }
    auto code = process_.wait_exit(20.0);
    if (!code) FAIL(name_ << " did not exit within 20 s of SHUTDOWN SAVE");
    if (*code != 0) FAIL(name_ << " exited with code " << *code << " after SHUTDOWN SAVE");
}

RedisClient RedisServer::client(double timeout_s) const { return RedisClient::connect(port_, timeout_s); }

std::string RedisServer::info(const std::string& section) const {
    return client().must({"INFO", section}).str;
}

std::string RedisServer::info_field(const std::string& section, const std::string& field) const {
    return info_value(info(section), field);
}

int RedisServer::log_count(const std::string& needle) const {
    std::ifstream f(log_path());
    std::string line;
    int n = 0;
    while (std::getline(f, line)) n += line.find(needle) != std::string::npos;
    return n;
}

int64_t RedisServer::info_int(const std::string& section, const std::string& field) const {
    std::string v = info_field(section, field);
    if (v.empty()) throw std::runtime_error(name_ + ": INFO " + section + " has no field " + field);
    return std::stoll(v);
}

}  // namespace psync::test

namespace psync::test {

std::string dump_rdb(const RedisServer& server, const std::string& path) {
    static const std::string cli = find_executable("redis-cli");
    const std::string log = path + ".log";
    int code = run_command({cli, "-h", "127.0.0.1", "-p", std::to_string(server.port()), "--rdb", path}, log, 60.0);
    if (code != 0) FAIL("redis-cli --rdb exited with code " << code << ":\n" << tail_file(log, 20));
    std::ifstream f(path, std::ios::binary);
    std::string rdb((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (rdb.rfind("REDIS", 0) != 0) FAIL("redis-cli --rdb wrote no RDB to " << path << " (" << rdb.size() << " bytes)");
    return rdb;
}

}  // namespace psync::test
