// A child process started with fork/exec, stopped by its PID. RAII: the destructor stops it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace psync::test {

// Absolute path of an executable: `name` itself if it contains a '/', else searched in $PATH.
// Throws std::runtime_error if not found.
std::string find_executable(const std::string& name);

class Process {
public:
    Process() = default;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process();

    // Starts argv[0] (an absolute path) with stdin from /dev/null and stdout+stderr appended
    // to `output_path`. The child gets SIGKILL if the test process dies, so a crashed or
    // timed-out test leaves nothing behind. Throws std::runtime_error if exec fails.
    void spawn(const std::vector<std::string>& argv, const std::string& output_path);

    // True while the child runs (reaps it once it has exited).
    bool running();

    // Waits up to timeout_s for the child to exit. Returns its exit code (128+signal if
    // killed by a signal) or nullopt if it is still running.
    std::optional<int> wait_exit(double timeout_s);

    // SIGTERM, wait up to timeout_s, then SIGKILL and reap. Returns the exit code,
    // or -1 if no child was ever started.
    int stop(double timeout_s = 10.0);

    // Sends a signal without waiting (e.g. SIGKILL or SIGSTOP for fault injection).
    void signal(int sig);

    // RLIMIT_FSIZE soft limit (bytes) set in the child before exec, for the next spawn()s
    // (nullopt: inherited). Writes past it fail with EFBIG, like a full disk. Raise it on the
    // running child with prlimit(2) (same user: no privilege needed for a soft limit).
    void set_file_size_limit(std::optional<uint64_t> bytes) { file_size_limit_ = bytes; }
    // RLIMIT_NOFILE soft limit (open file descriptors) set in the child before exec, for the
    // next spawn()s (nullopt: inherited). Past it, open/socket/accept fail with EMFILE.
    void set_open_files_limit(std::optional<uint64_t> fds) { open_files_limit_ = fds; }

    pid_t pid() const { return pid_; }
    bool started() const { return pid_ > 0; }
    // Exit code of the reaped child (nullopt while running or never started).
    std::optional<int> exit_code() const;

private:
    pid_t pid_ = -1;
    std::optional<uint64_t> file_size_limit_;
    std::optional<uint64_t> open_files_limit_;
    bool reaped_ = false;
    int status_ = 0;
};

// Runs a command to completion (bounded by timeout_s; killed after it). Returns the exit code.
int run_command(const std::vector<std::string>& argv, const std::string& output_path,
                double timeout_s);

}  // namespace psync::test
