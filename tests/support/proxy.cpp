#include "tests/support/proxy.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

#include "tests/support/http.h"
#include "tests/support/ports.h"
#include "tests/support/sandbox.h"
#include "tests/support/test_context.h"

#ifndef PSYNC_PROXY_BIN
#error "PSYNC_PROXY_BIN must be defined by the build"
#endif

namespace psync::test {

using nlohmann::json;

ProxyProcess::ProxyProcess(Sandbox& sandbox, std::string name, int upstream_port, ProxyOptions options)
    : sandbox_(sandbox), name_(std::move(name)), upstream_port_(upstream_port), options_(std::move(options)) {
    dir_ = sandbox_.subdir(name_);
    data_dir_ = options_.data_dir.empty() ? sandbox_.subdir(name_ + "/data") : options_.data_dir;
    sandbox_.watch_log(name_ + " log", log_path());
}

ProxyProcess::~ProxyProcess() { process_.stop(10.0); }

void ProxyProcess::start() {
    const bool first_start = port_ == 0;
    std::string level = options_.log_level;
    if (level.empty()) {
        const char* env = std::getenv("PSYNC_IT_LOG_LEVEL");
        level = (env && *env) ? env : "debug";
    }
    for (int attempt = 1;; ++attempt) {
        if (first_start) {
            port_ = pick_free_port();
            status_port_ = pick_free_port();
        }
        std::vector<std::string> argv = {options_.binary.empty() ? std::string(PSYNC_PROXY_BIN) : options_.binary,
                                         "--upstream", (options_.upstream_host.empty() ? std::string("127.0.0.1") : options_.upstream_host) + ":" + std::to_string(upstream_port_),
                                         "--port", std::to_string(port_),
                                         "--status-port", std::to_string(status_port_),
                                         "--dir", data_dir_,
                                         "--bind", "127.0.0.1",
                                         "--status-bind", "127.0.0.1",
                                         "--log-level", level};
        if (!options_.backlog_size.empty()) argv.insert(argv.end(), {"--backlog-size", options_.backlog_size});
        if (!options_.masterauth.empty()) argv.insert(argv.end(), {"--masterauth", options_.masterauth});
        if (!options_.requirepass.empty()) argv.insert(argv.end(), {"--requirepass", options_.requirepass});
        argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
        process_.set_file_size_limit(options_.file_size_limit);
        process_.set_open_files_limit(options_.open_files_limit);
        process_.spawn(argv, log_path());

        std::string why = "no answer yet";
        const auto start = Clock::now();
        while (seconds_since(start) < 15.0) {
            if (!process_.running()) {
                why = "psync-proxy exited with code " + std::to_string(process_.exit_code().value_or(-1)) +
                      " before GET /status answered";
                break;
            }
            try {
                // /status answers as soon as the proxy serves (/healthz only once it has a snapshot).
                if (options_.status_probe) {
                    if (options_.status_probe(status_port_)) return;
                    why = "the status probe did not succeed";
                } else {
                    HttpResponse r = http_get(status_port_, "/status", 1.0);
                    if (r.status == 200) return;
                    why = "GET /status -> " + std::to_string(r.status) + " " + r.body;
                }
            } catch (const std::exception& e) {
                why = e.what();
            }
            sleep_ms(20);
        }
        process_.stop(5.0);
        if (first_start && attempt < 3 && why.find("exited") != std::string::npos &&
            tail_file(log_path(), 5).find("in use") != std::string::npos)
            continue;  // port race with another test process
        sandbox_.print_logs(30);
        FAIL(name_ << " (" << PSYNC_PROXY_BIN << ", port " << port_ << ", status port " << status_port_
                   << ") did not start: " << why);
    }
}

int ProxyProcess::stop() { return process_.stop(15.0); }

json ProxyProcess::status() const {
    HttpResponse r = http_get(status_port_, "/status");
    if (r.status != 200)
        throw std::runtime_error("GET /status -> HTTP " + std::to_string(r.status) + ": " + r.body);
    try {
        return json::parse(r.body);
    } catch (const json::exception& e) {
        throw std::runtime_error("GET /status: invalid JSON (" + std::string(e.what()) + "): " + r.body);
    }
}

json ProxyProcess::wait_status(const std::string& what, double timeout_s,
                               const std::function<bool(const json&, std::string& state)>& pred) const {
    json last;
    wait_until(name_ + ": " + what, timeout_s, [&](std::string& state) {
        last = status();
        std::string missing;
        bool ok = pred(last, missing);
        if (!ok) state = missing + (missing.empty() ? "" : "\n  ") + "status: " + last.dump();
        return ok;
    });
    return last;
}

json ProxyProcess::wait_snapshot(double timeout_s) const {
    return wait_status("a snapshot and a streaming upstream link", timeout_s, [](const json& s, std::string&) {
        return s.at("snapshot").is_object() && json_str(s, "/upstream/state") == "streaming" &&
               is_replid(json_str(s, "/proxy/replid"));
    });
}

json ProxyProcess::wait_replica_online(int replica_port, double timeout_s) const {
    return wait_status("replica with listening_port " + std::to_string(replica_port) + " online", timeout_s,
                       [&](const json& s, std::string&) {
                           return replica_field(s, replica_port, "state") == "online";
                       });
}

void check_clean_shutdown(ProxyProcess& proxy) {
    const int code = proxy.stop();
    CHECK_MESSAGE(code == 0, proxy.name() << " exited with code " << code << " on SIGTERM");
    std::ifstream f(proxy.log_path());
    std::string line;
    std::string report;
    while (std::getline(f, line)) {
        if (line.find("Sanitizer") != std::string::npos || line.find("runtime error:") != std::string::npos) {
            report += line + "\n";
            if (report.size() > 2000) break;
        }
    }
    CHECK_MESSAGE(report.empty(), proxy.name() << " log has sanitizer reports:\n" << report);
}

const json& json_at(const json& j, const std::string& pointer) {
    try {
        return j.at(json::json_pointer(pointer));
    } catch (const json::exception&) {
        throw std::runtime_error("JSON has no " + pointer + ": " + j.dump());
    }
}

int64_t json_int(const json& j, const std::string& pointer) {
    const json& v = json_at(j, pointer);
    if (!v.is_number_integer()) throw std::runtime_error(pointer + " is not an integer: " + v.dump());
    return v.get<int64_t>();
}

std::string json_str(const json& j, const std::string& pointer) {
    const json& v = json_at(j, pointer);
    if (!v.is_string()) throw std::runtime_error(pointer + " is not a string: " + v.dump());
    return v.get<std::string>();
}

json find_replica(const json& status, int port) {
    for (const auto& r : json_at(status, "/replicas")) {
        if (r.contains("listening_port") && r["listening_port"].is_number_integer() &&
            r["listening_port"].get<int>() == port)
            return r;
    }
    return nullptr;
}

std::string replica_field(const json& status, int port, const std::string& key) {
    json r = find_replica(status, port);
    if (!r.is_object()) return "(not listed)";
    if (!r.contains(key)) return "(none)";
    return r[key].is_string() ? r[key].get<std::string>() : r[key].dump();
}

bool is_replid(const std::string& s) {
    if (s.size() != 40) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace psync::test
