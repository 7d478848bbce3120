#include "tests/support/process.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/test_context.h"

namespace psync::test {

std::string find_executable(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        if (dir.empty()) continue;
        std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    throw std::runtime_error("executable not found in PATH: " + name);
}

Process::~Process() { stop(); }

void Process::spawn(const std::vector<std::string>& argv, const std::string& output_path) {
    if (argv.empty()) throw std::invalid_argument("Process::spawn: empty argv");
    if (pid_ > 0 && !reaped_) throw std::logic_error("Process::spawn: still running: " + argv[0]);

    // Everything the child needs is prepared before fork: after fork only
    // async-signal-safe calls (the test process may have other threads).
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) throw std::runtime_error("cannot open " + output_path + ": " + std::strerror(errno));
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int err_pipe[2];
    if (devnull < 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
        ::close(out);
        if (devnull >= 0) ::close(devnull);
        throw std::runtime_error(std::string("spawn setup failed: ") + std::strerror(errno));
    }
    const pid_t parent = ::getpid();
    rlimit fsize{};
    if (file_size_limit_) {
        ::getrlimit(RLIMIT_FSIZE, &fsize);
        fsize.rlim_cur = static_cast<rlim_t>(*file_size_limit_);
        if (fsize.rlim_max != RLIM_INFINITY && fsize.rlim_cur > fsize.rlim_max) fsize.rlim_cur = fsize.rlim_max;
    }
    rlimit nofile{};
    if (open_files_limit_) {
        ::getrlimit(RLIMIT_NOFILE, &nofile);
        nofile.rlim_cur = static_cast<rlim_t>(*open_files_limit_);
        if (nofile.rlim_max != RLIM_INFINITY && nofile.rlim_cur > nofile.rlim_max) nofile.rlim_cur = nofile.rlim_max;
    }

    pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        if ((file_size_limit_ && ::setrlimit(RLIMIT_FSIZE, &fsize) != 0) ||
            (open_files_limit_ && ::setrlimit(RLIMIT_NOFILE, &nofile) != 0)) {
            int e = errno;  // reported by the parent as a failed exec
            ssize_t ignored = ::write(err_pipe[1], &e, sizeof e);
            (void)ignored;
            ::_exit(127);
        }
        ::dup2(devnull, 0);
        ::dup2(out, 1);
        ::dup2(out, 2);
        ::execv(args[0], args.data());
        int e = errno;
        ssize_t ignored = ::write(err_pipe[1], &e, sizeof e);
        (void)ignored;
        ::_exit(127);
    }
    int fork_errno = errno;
    ::close(out);
    ::close(devnull);
    ::close(err_pipe[1]);
    if (pid < 0) {
        ::close(err_pipe[0]);
        throw std::runtime_error(std::string("fork failed: ") + std::strerror(fork_errno));
    }
    int exec_errno = 0;
    ssize_t n;
    do {
        n = ::read(err_pipe[0], &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    ::close(err_pipe[0]);
    if (n > 0) {
        int st;
        ::waitpid(pid, &st, 0);
        throw std::runtime_error("exec " + argv[0] + " failed: " + std::strerror(exec_errno));
    }
    pid_ = pid;
    reaped_ = false;
    status_ = 0;
}

bool Process::running() {
    if (pid_ <= 0 || reaped_) return false;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
        reaped_ = true;
        status_ = st;
        return false;
    }
    return true;
}

std::optional<int> Process::wait_exit(double timeout_s) {
    const auto start = Clock::now();
    while (running()) {
        if (seconds_since(start) >= timeout_s) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_code();
}

int Process::stop(double timeout_s) {
    if (pid_ <= 0) return -1;
    if (running()) {
        ::kill(pid_, SIGTERM);
        if (!wait_exit(timeout_s)) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
            }
            reaped_ = true;
            status_ = st;
        }
    }
    return exit_code().value_or(-1);
}

void Process::signal(int sig) {
    if (running()) ::kill(pid_, sig);
}

std::optional<int> Process::exit_code() const {
    if (pid_ <= 0 || !reaped_) return std::nullopt;
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
    return -1;
}

int run_command(const std::vector<std::string>& argv, const std::string& output_path,
                double timeout_s) {
    Process p;
    p.spawn(argv, output_path);
    if (auto code = p.wait_exit(timeout_s)) return *code;
    p.stop(1.0);
    throw std::runtime_error(argv[0] + " did not finish within " + std::to_string(timeout_s) + " s");
}

}  // namespace psync::test
