#include "proxy/live_restart.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "proxy/build_info.h"
#include "proxy/handover.h"
#include "proxy/live_feed.h"
#include "proxy/log.h"
#include "proxy/proxy.h"

extern char** environ;

namespace psync::proxy {

namespace {
const char* kComponent = "live-restart";
constexpr uint64_t kCheckTimeoutMs = 30'000;
constexpr size_t kMaxCheckOutput = 64 * 1024;

std::string read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s;
  s.resize(kMaxCheckOutput);
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

// The last non-empty line of what a child wrote (its error message).
std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of("\r\n ");
  if (end == std::string::npos) return "";
  size_t start = text.find_last_of('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return text.substr(start, std::min<size_t>(end + 1 - start, 300));
}

bool set_cloexec(int fd, bool on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return false;
  int want = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  return want == flags || fcntl(fd, F_SETFD, want) == 0;
}

std::vector<char*> c_argv(const std::vector<std::string>& args) {
  std::vector<char*> out;
  for (const auto& a : args) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

sigset_t control_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR2}) sigaddset(&set, sig);
  return set;
}

}  // namespace

void block_control_signals() {
  sigset_t set = control_signals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
}

void unblock_control_signals() {
  sigset_t set = control_signals();
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

const char* LiveRestart::state_name(State s) {
  switch (s) {
    case State::kIdle: return "idle";
    case State::kChecking: return "checking";
    case State::kWaiting: return "waiting";
    case State::kPausing: return "pausing";
  }
  return "?";
}

LiveRestart::LiveRestart(Proxy& proxy) : proxy_(proxy) {}

LiveRestart::~LiveRestart() = default;

void LiveRestart::request() {
  if (state_ != State::kIdle) {
    LOG_WARN(kComponent, "SIGUSR2: a live restart is already under way (%s)", state_name(state_));
    return;
  }
  last_attempt_unix_ = time(nullptr);
  if (plan_.exe_path.empty()) {
    failed("the proxy's own binary could not be found when it started (/proc/self/exe)");
    return;
  }
  LOG_INFO(kComponent, "SIGUSR2: live restart into %s: checking that it starts with these flags",
           plan_.exe_path.c_str());
  proxy_.notify("RELOADING=1\nSTATUS=live restart: checking the new binary");
  // The pre-flight: the new binary parses the same flags (and a changed
  // --config file) and says what it would run with.
  const std::string& dir = proxy_.config().dir;
  check_out_ = dir + "/live-restart-check.out";
  check_err_ = dir + "/live-restart-check.err";
  int out = ::open(check_out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = ::open(check_err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0 || err < 0) {
    std::string why = std::string("cannot write to ") + dir + ": " + strerror(errno);
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
    failed(why);
    return;
  }
  std::vector<std::string> args;
  args.push_back(plan_.argv.empty() ? plan_.exe_path : plan_.argv[0]);
  args.push_back(kCheckFlag);
  for (size_t i = 1; i < plan_.argv.size(); ++i) args.push_back(plan_.argv[i]);
  std::vector<char*> cargs = c_argv(args);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = out;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = err;
  uv_process_options_t opts{};
  opts.file = plan_.exe_path.c_str();
  opts.args = cargs.data();
  opts.exit_cb = on_check_exit;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  check_ = new uv_process_t;
  check_->data = this;
  int rc = uv_spawn(proxy_.loop(), check_, &opts);
  ::close(out);
  ::close(err);
  if (rc != 0) {
    // A failed spawn still initialized the handle: it must be closed.
    uv_close(reinterpret_cast<uv_handle_t*>(check_), [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
    check_ = nullptr;
    failed("cannot run " + plan_.exe_path + ": " + uv_strerror(rc));
    return;
  }
  check_timer_ = new uv_timer_t;
  uv_timer_init(proxy_.loop(), check_timer_);
  check_timer_->data = this;
  uv_timer_start(check_timer_, on_check_timeout, kCheckTimeoutMs, 0);
  state_ = State::kChecking;
}

void LiveRestart::on_check_timeout(uv_timer_t* timer) {
  auto* self = static_cast<LiveRestart*>(timer->data);
  if (self->check_) uv_process_kill(self->check_, SIGKILL);  // its exit callback reports it
}

void LiveRestart::on_check_exit(uv_process_t* process, int64_t status, int term_signal) {
  auto* self = static_cast<LiveRestart*>(process->data);
  self->check_finished(status, term_signal);
}

void LiveRestart::close_check_handles() {
  if (check_) {
    uv_close(reinterpret_cast<uv_handle_t*>(check_), [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
    check_ = nullptr;
  }
  if (check_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(check_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    check_timer_ = nullptr;
  }
}

void LiveRestart::check_finished(int64_t status, int term_signal) {
  close_check_handles();
  if (state_ != State::kChecking) return;  // stopped meanwhile
  const std::string out = read_small_file(check_out_);
  const std::string err = read_small_file(check_err_);
  ::unlink(check_out_.c_str());
  ::unlink(check_err_.c_str());
  const std::string what = plan_.exe_path + " " + kCheckFlag;
  if (term_signal != 0) {
    failed(what + " was killed by signal " + std::to_string(term_signal) +
           (term_signal == SIGKILL ? " (no answer within 30 s)" : ""));
    return;
  }
  if (status != 0) {
    std::string said = last_line(err.empty() ? out : err);
    failed(what + " exited with code " + std::to_string(status) + (said.empty() ? "" : ": " + said));
    return;
  }
  // What the new binary would run with: the sockets and the data directory
  // cannot move in a live restart.
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("handover_version")) {
    failed(what + " did not answer as a psync-proxy that can take a live restart over (an older build?)");
    return;
  }
  try {
    int version = j.at("handover_version").get<int>();
    if (version != kHandoverVersion) {
      failed(what + " reads handover version " + std::to_string(version) + ", this build writes version " +
             std::to_string(kHandoverVersion) + ": stop and start the proxy instead");
      return;
    }
    const Config& c = proxy_.config();
    struct Same {
      const char* flag;
      std::string now, then;
    };
    const Same checks[] = {
        {"--dir", c.dir, j.at("dir").get<std::string>()},
        {"--bind", c.bind, j.at("bind").get<std::string>()},
        {"--port", std::to_string(c.port), std::to_string(j.at("port").get<int>())},
        {"--status-bind", c.status_bind, j.at("status_bind").get<std::string>()},
        {"--status-port", std::to_string(c.status_port), std::to_string(j.at("status_port").get<int>())},
    };
    for (const auto& s : checks) {
      if (s.now != s.then) {
        failed(std::string("the new settings change ") + s.flag + " (" + s.now + " -> " + s.then +
               "): a live restart keeps the data directory and the listening sockets; stop and start the "
               "proxy to change it");
        return;
      }
    }
    LOG_INFO(kComponent, "%s (build %s) accepts the flags", plan_.exe_path.c_str(),
             j.value("build", std::string("?")).c_str());
  } catch (const std::exception& e) {
    failed(what + " answered something unexpected: " + e.what());
    return;
  }
  state_ = State::kWaiting;
  waiting_for_.clear();
  try_hand_over();
}

void LiveRestart::on_second() {
  if (state_ == State::kWaiting) {
    try_hand_over();
  } else if (state_ == State::kPausing) {
    Link& link = proxy_.feed().link();
    if (link.state() != Link::State::kStreaming) {
      // The link was lost while pausing: nothing of it to hand over now.
      link.cancel_pause();
      state_ = State::kWaiting;
      try_hand_over();
    } else {
      link.try_pause_now();  // an idle master: the pause waited for a write of ours
    }
  }
}

void LiveRestart::try_hand_over() {
  std::string blocker = proxy_.handover_blocker();
  if (!blocker.empty()) {
    if (blocker != waiting_for_) {
      LOG_INFO(kComponent, "waiting before the exec: %s", blocker.c_str());
      waiting_for_ = blocker;
    }
    return;
  }
  Link& link = proxy_.feed().link();
  if (link.state() == Link::State::kStreaming) {
    state_ = State::kPausing;
    link.pause_at_boundary([this](std::string tail) { exec_now(std::move(tail)); });
    link.try_pause_now();
    return;
  }
  exec_now({});
}

void LiveRestart::exec_now(std::string tail) {
  Handover h = proxy_.make_handover(tail);
  h.exe_path = plan_.exe_path;
  h.argv = plan_.argv;
  h.live_restart_attempt_unix = last_attempt_unix_;
  // The previous image's binary, for a fallback: the file at the path may be
  // replaced (or broken) by now, the open inode is this one.
  h.fallback_exe_fd = ::open("/proc/self/exe", O_RDONLY);
  const std::string path = proxy_.config().dir + "/" + kHandoverFile;
  const std::string tmp = path + ".tmp";
  std::string why;
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << encode_handover(h);
    f.flush();
    if (!f) why = "cannot write " + tmp;
  }
  if (why.empty() && ::rename(tmp.c_str(), path.c_str()) != 0) why = "cannot rename " + tmp + ": " + strerror(errno);
  const std::vector<int> fds = handover_fds(h);
  if (why.empty()) {
    for (int fd : fds) {
      if (!set_cloexec(fd, false)) {
        why = "descriptor " + std::to_string(fd) + ": " + strerror(errno);
        break;
      }
    }
  }
  if (why.empty()) {
    ::setenv(kStateEnv, path.c_str(), 1);
    if (h.fallback_exe_fd >= 0) ::setenv(kPreviousExeEnv, std::to_string(h.fallback_exe_fd).c_str(), 1);
    ::unsetenv(kFallbackEnv);
    LOG_INFO(kComponent, "exec %s: %zu replica connections, the upstream %s, the listeners go over to it",
             plan_.exe_path.c_str(), h.sessions.size(), h.upstream.fd >= 0 ? "connection" : "link (not connected)");
    flush_log();
    std::vector<char*> cargs = c_argv(plan_.argv);
    block_control_signals();
    ::execv(plan_.exe_path.c_str(), cargs.data());
    why = "exec " + plan_.exe_path + " failed: " + strerror(errno);
    unblock_control_signals();
  }
  // Still here: everything is as it was, the stream goes on from its boundary.
  ::unsetenv(kStateEnv);
  ::unsetenv(kPreviousExeEnv);
  for (int fd : fds) set_cloexec(fd, true);
  if (h.fallback_exe_fd >= 0) ::close(h.fallback_exe_fd);
  ::unlink(path.c_str());
  ::unlink(tmp.c_str());
  proxy_.resume_after_failed_handover(tail);
  failed(why);
}

void LiveRestart::failed(const std::string& why) {
  last_error_ = why;
  state_ = State::kIdle;
  LOG_ERROR(kComponent, "live restart refused: %s; the proxy goes on as it was", why.c_str());
  proxy_.notify("READY=1\nSTATUS=live restart refused: " + why);
}

void LiveRestart::stop() {
  if (state_ == State::kPausing) proxy_.feed().link().cancel_pause();
  if (check_) uv_process_kill(check_, SIGKILL);
  close_check_handles();
  state_ = State::kIdle;
}

void fall_back_after_failed_handover(const std::string& state_path, const std::string& reason,
                                     const std::vector<std::string>& argv, const std::vector<int>& handed_fds,
                                     int previous_exe_fd, bool already_fallback) {
  // For the image that takes over next: why this one did not.
  std::string dir = state_path.substr(0, state_path.find_last_of('/'));
  {
    std::ofstream f(dir + "/" + kFailedHandoverFile, std::ios::trunc);
    f << reason << "\n";
  }
  std::vector<char*> cargs = c_argv(argv);
  if (!already_fallback && previous_exe_fd >= 0) {
    LOG_ERROR(kComponent, "%s: the previous binary takes the connections over again", reason.c_str());
    flush_log();
    for (int fd : handed_fds) set_cloexec(fd, false);
    set_cloexec(previous_exe_fd, true);  // fexecve of an ELF file reads it before the close
    ::setenv(kStateEnv, state_path.c_str(), 1);
    ::setenv(kFallbackEnv, "1", 1);
    ::unsetenv(kPreviousExeEnv);
    ::fexecve(previous_exe_fd, cargs.data(), environ);
    LOG_ERROR(kComponent, "cannot exec the previous binary again: %s", strerror(errno));
  } else {
    LOG_ERROR(kComponent, "%s", reason.c_str());
  }
  // Last resort, in the same process: a plain start from the data directory,
  // with nothing inherited (replicas reconnect and continue from the log).
  LOG_ERROR(kComponent, "starting afresh from the data directory: replicas reconnect and continue");
  flush_log();
  ::unlink(state_path.c_str());
  ::unsetenv(kStateEnv);
  ::unsetenv(kFallbackEnv);
  ::unsetenv(kPreviousExeEnv);
  ::syscall(SYS_close_range, 3u, ~0u, static_cast<unsigned>(CLOSE_RANGE_CLOEXEC));
  ::execv("/proc/self/exe", cargs.data());
  LOG_ERROR(kComponent, "cannot exec /proc/self/exe: %s", strerror(errno));
  flush_log();
  _exit(1);
}

}  // namespace psync::proxy
