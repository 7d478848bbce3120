// Small helpers shared by the fault-injection, bad-input and security scenarios.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace psync::test {

class ProxyProcess;
class RedisServer;

// n letters and digits, a function of seed, that the RDB's LZF compression cannot shrink
// (so a snapshot has the size it seems).
std::string incompressible(size_t n, uint64_t seed);
// SETs big:0 .. big:<count-1> to incompressible values of `size` bytes on `server`.
void fill_big_values(const RedisServer& server, int count, size_t size);

// The proxy's sync counters at one moment (from /status).
struct SyncCounters {
    int64_t sync_full = 0;
    int64_t sync_partial_ok = 0;
    int64_t sync_partial_err = 0;
    int64_t upstream_syncs = 0;  // upstream.sync_count
    std::string describe() const;
};
SyncCounters sync_counters(const nlohmann::json& status);

// Lines of a log file that contain `needle`; with warn_or_error, only the lines logged at
// WARN or ERROR level (what an operator watching the log sees as a problem).
int count_log_lines(const std::string& path, const std::string& needle, bool warn_or_error = false);
// The lines themselves (at most `max`), for messages.
std::string grep_log(const std::string& path, const std::string& needle, size_t max = 10);

// Resident memory of a process, in KB (VmRSS); -1 if unknown.
long rss_kb(pid_t pid);
// CPU time a process has used so far (user + system, from /proc/<pid>/stat), in seconds;
// -1 if unknown.
double cpu_seconds(pid_t pid);
// Number of file descriptors a process has open (entries of /proc/<pid>/fd); -1 if unknown.
int open_fds(pid_t pid);

// Names of the entries of a directory, sorted ("" entries never; empty if unreadable).
std::vector<std::string> dir_entries(const std::string& dir);
// Permission bits (e.g. 0600) of a path; -1 if it does not exist.
int file_mode(const std::string& path);

// Sets the RLIMIT_FSIZE soft limit of a running process (nullopt: lifts it to the hard limit).
void set_file_size_limit(pid_t pid, std::optional<uint64_t> bytes);

// Sets an environment variable for the children started from now on, and restores it when
// destroyed. (Only while no other thread of the test reads the environment.)
class ScopedEnv {
public:
    ScopedEnv(std::string name, const std::string& value);
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
    ~ScopedEnv();

private:
    std::string name_;
    std::optional<std::string> old_;
};

// Loads tests/shim/fault_shim.c into the children started while it lives, with the given
// PSYNC_FAULT_* settings (see that file). Under AddressSanitizer the shim comes before its
// runtime in the library list, which ASan accepts once told so.
class FaultShim {
public:
    explicit FaultShim(const std::vector<std::pair<std::string, std::string>>& settings);
    FaultShim(const FaultShim&) = delete;
    FaultShim& operator=(const FaultShim&) = delete;

private:
    std::vector<std::unique_ptr<ScopedEnv>> env_;
};

// ASAN_OPTIONS for a child whose memory a test measures: the current options plus a small
// quarantine (freed memory held back by AddressSanitizer would otherwise count as growth).
std::string asan_options_for_memory_measurement();

}  // namespace psync::test
