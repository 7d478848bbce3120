// A real redis-server (Redis 7) on 127.0.0.1, in its own directory of a Sandbox.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/keyspace.h"
#include "tests/support/process.h"
#include "tests/support/redis_client.h"

namespace psync::test {

class Sandbox;

struct RedisServerOptions {
    // Plays a pre-PSYNC (2.4/2.6) master: `rename-command PSYNC ""`. Every server gets
    // `repl-diskless-sync no` so SYNC is answered with a `$len` payload.
    bool sync_only = false;
    // Starts as a replica of 127.0.0.1:<port>.
    std::optional<int> replicaof_port;
    // Extra redis.conf lines.
    std::vector<std::string> extra_config;
};

// Options of a SYNC-only master, and of a replica of 127.0.0.1:<port>.
RedisServerOptions sync_only_master_options();
RedisServerOptions replica_options(int master_port);

class RedisServer {
public:
    RedisServer(Sandbox& sandbox, std::string name, RedisServerOptions options = {});
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;
    ~RedisServer();

    // Starts the server and waits until it answers PING (or -LOADING). The first start picks
    // a free port (retrying on a port race); later starts reuse the same port and directory.
    void start();
    // SIGTERM, then SIGKILL after a timeout. Returns the exit code.
    int stop();
    // SHUTDOWN SAVE (writes dump.rdb even with `save ""`) and waits for the process to exit.
    void shutdown_save();
    bool running() { return process_.running(); }
    Process& process() { return process_; }  // for fault injection (SIGKILL, SIGSTOP)

    const std::string& name() const { return name_; }
    int port() const { return port_; }
    const std::string& dir() const { return dir_; }
    std::string log_path() const { return dir_ + "/redis.log"; }

    RedisClient client(double timeout_s = 5.0) const;
    std::string info(const std::string& section) const;
    std::string info_field(const std::string& section, const std::string& field) const;
    int64_t info_int(const std::string& section, const std::string& field) const;
    Keyspace keyspace() const { return read_keyspace(port_); }
    // Number of lines of the server's log containing `needle` (e.g. what a replica says
    // about its syncs: "Successful partial resynchronization with master.").
    int log_count(const std::string& needle) const;

private:
    void write_config() const;
    std::string wait_ready(double timeout_s);  // "" when ready, else why not

    Sandbox& sandbox_;
    std::string name_;
    RedisServerOptions options_;
    std::string dir_;
    int port_ = 0;
    Process process_;
};

}  // namespace psync::test

namespace psync::test {

// Fetches an RDB snapshot of `server` with `redis-cli --rdb <path>` and returns its bytes.
std::string dump_rdb(const RedisServer& server, const std::string& path);

}  // namespace psync::test
