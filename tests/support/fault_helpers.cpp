#include "tests/support/fault_helpers.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"

namespace psync::test {

std::string SyncCounters::describe() const {
    return "sync_full=" + std::to_string(sync_full) + " sync_partial_ok=" + std::to_string(sync_partial_ok) +
           " sync_partial_err=" + std::to_string(sync_partial_err) +
           " upstream.sync_count=" + std::to_string(upstream_syncs);
}

SyncCounters sync_counters(const nlohmann::json& s) {
    return {json_int(s, "/counters/sync_full"), json_int(s, "/counters/sync_partial_ok"),
            json_int(s, "/counters/sync_partial_err"), json_int(s, "/upstream/sync_count")};
}

namespace {
// The proxy's log lines are "<timestamp> <level> <component> <message>".
bool is_warn_or_error(const std::string& line) {
    std::istringstream in(line);
    std::string when, level;
    in >> when >> level;
    for (auto& ch : level) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return level == "error" || level == "warn" || level == "warning";
}
}  // namespace

int count_log_lines(const std::string& path, const std::string& needle, bool warn_or_error) {
    std::ifstream f(path);
    std::string line;
    int n = 0;
    while (std::getline(f, line)) {
        if (line.find(needle) == std::string::npos) continue;
        if (warn_or_error && !is_warn_or_error(line)) continue;
        ++n;
    }
    return n;
}

std::string grep_log(const std::string& path, const std::string& needle, size_t max) {
    std::ifstream f(path);
    std::string line, out;
    size_t n = 0;
    while (std::getline(f, line) && n < max) {
        if (line.find(needle) == std::string::npos) continue;
        out += "  " + line + "\n";
        ++n;
    }
    return out;
}

long rss_kb(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    }
    return -1;
}

double cpu_seconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so fields are counted
    // from the last ')'. utime and stime are fields 14 and 15 (11th and 12th after it).
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream rest(stat.substr(close + 1));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    const long ticks = ::sysconf(_SC_CLK_TCK);
    if (ticks <= 0) return -1;
    return static_cast<double>(utime + stime) / static_cast<double>(ticks);
}

int open_fds(pid_t pid) {
    std::error_code ec;
    int n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++n;
    return ec ? -1 : n;
}

std::vector<std::string> dir_entries(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

int file_mode(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return -1;
    return static_cast<int>(st.st_mode & 07777);
}

void set_file_size_limit(pid_t pid, std::optional<uint64_t> bytes) {
    rlimit cur{};
    if (::prlimit(pid, RLIMIT_FSIZE, nullptr, &cur) != 0) throw std::runtime_error("prlimit(get) failed");
    rlimit next = cur;
    next.rlim_cur = bytes ? static_cast<rlim_t>(*bytes) : cur.rlim_max;
    if (::prlimit(pid, RLIMIT_FSIZE, &next, nullptr) != 0) throw std::runtime_error("prlimit(set) failed");
}

ScopedEnv::ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* v = std::getenv(name_.c_str())) old_ = v;
    ::setenv(name_.c_str(), value.c_str(), 1);
}

ScopedEnv::~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
}

std::string asan_options_for_memory_measurement() {
    const char* cur = std::getenv("ASAN_OPTIONS");
    std::string opts = cur ? cur : "";
    if (!opts.empty()) opts += ":";
    return opts + "quarantine_size_mb=1:thread_local_quarantine_size_kb=64";
}

std::string incompressible(size_t n, uint64_t seed) {
    static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string v(n, '\0');
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& ch : v) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ch = kAlnum[x % 62];
    }
    return v;
}

void fill_big_values(const RedisServer& server, int count, size_t size) {
    RedisClient m = server.client();
    std::vector<Command> cmds;
    for (int i = 0; i < count; ++i) {
        cmds.push_back({"SET", "big:" + std::to_string(i), incompressible(size, static_cast<uint64_t>(i))});
    }
    m.must_pipeline(cmds);
}

}  // namespace psync::test

namespace psync::test {

FaultShim::FaultShim(const std::vector<std::pair<std::string, std::string>>& settings) {
    env_.push_back(std::make_unique<ScopedEnv>("LD_PRELOAD", PSYNC_FAULT_SHIM));
    const char* asan = std::getenv("ASAN_OPTIONS");
    std::string options = asan ? std::string(asan) + ":" : std::string();
    env_.push_back(std::make_unique<ScopedEnv>("ASAN_OPTIONS", options + "verify_asan_link_order=0"));
    for (const auto& [name, value] : settings) env_.push_back(std::make_unique<ScopedEnv>(name, value));
}

}  // namespace psync::test
