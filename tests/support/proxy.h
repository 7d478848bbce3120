// The psync-proxy binary under test, on 127.0.0.1, with its own data directory and log.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace psync::test {

class Sandbox;

struct ProxyOptions {
    std::string backlog_size;  // --backlog-size, "" = default
    std::string masterauth;    // --masterauth, "" = none
    std::string requirepass;   // --requirepass, "" = none
    std::string log_level;     // --log-level; "" = $PSYNC_IT_LOG_LEVEL or "debug"
    std::string upstream_host;  // host in --upstream; "" = 127.0.0.1
    std::vector<std::string> extra_args;
    std::string binary;        // the executable; "" = PSYNC_PROXY_BIN
    std::string data_dir;      // --dir; "" = <sandbox>/<name>/data, created by the sandbox
    std::optional<uint64_t> file_size_limit;  // RLIMIT_FSIZE of the proxy (see Process)
    std::optional<uint64_t> open_files_limit;  // RLIMIT_NOFILE of the proxy (see Process)
    // How start() knows the proxy serves (true: it does), given the status port; unset: a
    // plain GET /status that answers 200 (set it for --status-tls).
    std::function<bool(int status_port)> status_probe;
};

class ProxyProcess {
public:
    ProxyProcess(Sandbox& sandbox, std::string name, int upstream_port, ProxyOptions options = {});
    ProxyProcess(const ProxyProcess&) = delete;
    ProxyProcess& operator=(const ProxyProcess&) = delete;
    ~ProxyProcess();

    // Starts the proxy and waits until GET /healthz answers 200. The first start picks free
    // ports (retrying on a port race); a restart reuses the ports and the data directory.
    void start();
    // The first start on these ports (a pair of proxies that name each other's port).
    void start_on(int port, int status_port) {
        port_ = port;
        status_port_ = status_port;
        start();
    }
    // SIGTERM (then SIGKILL after a timeout). Returns the exit code.
    int stop();
    bool running() { return process_.running(); }
    Process& process() { return process_; }

    const std::string& name() const { return name_; }
    int port() const { return port_; }
    int status_port() const { return status_port_; }
    const std::string& data_dir() const { return data_dir_; }
    std::string log_path() const { return dir_ + "/proxy.log"; }

    // GET /status, parsed. Throws if the answer is not 200 with a JSON body.
    nlohmann::json status() const;

    // Polls /status until pred(status) holds; FAILs after timeout_s with the last status.
    // `pred` may write a short description of what it is missing into `state`.
    nlohmann::json wait_status(const std::string& what, double timeout_s,
                               const std::function<bool(const nlohmann::json&, std::string& state)>& pred) const;

    // Waits until the proxy has a snapshot and streams from its upstream.
    nlohmann::json wait_snapshot(double timeout_s = 30) const;
    // Waits until the replica listening on `replica_port` is listed as online.
    nlohmann::json wait_replica_online(int replica_port, double timeout_s = 30) const;

private:
    Sandbox& sandbox_;
    std::string name_;
    int upstream_port_;
    ProxyOptions options_;
    std::string dir_;
    std::string data_dir_;
    int port_ = 0;
    int status_port_ = 0;
    Process process_;
};

// Stops the proxy with SIGTERM and CHECKs that it exits 0 and that its log holds no
// AddressSanitizer / LeakSanitizer / UBSan report (for runs against a PSYNC_SANITIZE build).
void check_clean_shutdown(ProxyProcess& proxy);

// Value at a JSON pointer ("/counters/sync_full"); throws a readable error if absent.
const nlohmann::json& json_at(const nlohmann::json& j, const std::string& pointer);
int64_t json_int(const nlohmann::json& j, const std::string& pointer);
std::string json_str(const nlohmann::json& j, const std::string& pointer);

// The entry of status["replicas"] whose listening_port is `port`, or null.
nlohmann::json find_replica(const nlohmann::json& status, int port);

// A string field of that entry: "(not listed)" if the replica is absent, "(none)" if the field is.
std::string replica_field(const nlohmann::json& status, int port, const std::string& key);

// True for a 40-character lowercase hex replication id.
bool is_replid(const std::string& s);

}  // namespace psync::test
