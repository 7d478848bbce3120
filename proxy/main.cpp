// psync-proxy: replicates a SYNC-only Redis master once and serves Redis
// replicas with PSYNC from its own log and snapshot.
#include <fcntl.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxy/build_info.h"
#include "proxy/config.h"
#include "proxy/handover.h"
#include "proxy/live_restart.h"
#include "proxy/log.h"
#include "proxy/proxy.h"

using namespace psync::proxy;

namespace {
struct Signals {
  uv_signal_t term;
  uv_signal_t intr;
  uv_signal_t hup;
  uv_signal_t usr2;
  Proxy* proxy;
};

void close_signals(Signals* s) {
  uv_close(reinterpret_cast<uv_handle_t*>(&s->term), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->intr), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->hup), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->usr2), nullptr);
}

void on_usr2(uv_signal_t* handle, int) { static_cast<Signals*>(handle->data)->proxy->live_restart().request(); }

// `psync-proxy --live-restart-check <flags>`: what this binary would run with
// (proxy/live_restart.h). Exit 0 with one JSON line, or the flags' error.
int live_restart_check(int argc, char** argv) {
  std::vector<char*> args;
  args.push_back(argv[0]);
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  ParseResult parsed = parse_args(static_cast<int>(args.size()) - 1, args.data());
  if (parsed.exit) return parsed.exit_code == 0 ? 2 : parsed.exit_code;
  const Config& c = parsed.config;
  nlohmann::json j = {{"handover_version", kHandoverVersion},
                      {"build", build_id()},
                      {"dir", c.dir},
                      {"bind", c.bind},
                      {"port", c.port},
                      {"status_bind", c.status_bind},  // parse_args resolved "" to --bind
                      {"status_port", c.status_port},
                      {"upstream", c.upstream.str()}};
  printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

// A live restart's handover, when this image was exec'd for one.
struct Inherited {
  bool active = false;
  std::string path;
  std::string error;  // the handover cannot be read: fall back
  Handover handover;
  std::vector<int> fds;
  int previous_exe_fd = -1;
  bool fallback = false;  // this image is the previous binary, exec'd again
};

Inherited take_inherited() {
  Inherited in;
  const char* path = getenv(kStateEnv);
  if (path == nullptr) return in;
  in.active = true;
  in.path = path;
  if (const char* fd = getenv(kPreviousExeEnv)) in.previous_exe_fd = atoi(fd);
  in.fallback = getenv(kFallbackEnv) != nullptr;
  // Nothing this process starts may see them.
  unsetenv(kStateEnv);
  unsetenv(kPreviousExeEnv);
  unsetenv(kFallbackEnv);
  std::ifstream f(in.path, std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  if (!f) {
    in.error = "cannot read the handover " + in.path;
  } else if (!decode_handover(text.str(), in.handover, in.error)) {
    in.error = "cannot read the handover " + in.path + ": " + in.error;
  } else {
    in.fds = handover_fds(in.handover);
  }
  // Inherited descriptors go to no later exec but the one that wants them.
  for (int fd : in.fds) fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (in.previous_exe_fd >= 0) fcntl(in.previous_exe_fd, F_SETFD, FD_CLOEXEC);
  return in;
}

[[noreturn]] void fall_back(const Inherited& in, const std::vector<std::string>& argv, const std::string& why) {
  fall_back_after_failed_handover(in.path, why, argv, in.fds, in.previous_exe_fd, in.fallback);
}

// The binary's path when the process started (an upgrade replaces the file
// there; the live restart execs what is there then).
std::string own_path() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string p(buf, static_cast<size_t>(n));
  const std::string deleted = " (deleted)";
  if (p.size() > deleted.size() && p.compare(p.size() - deleted.size(), deleted.size(), deleted) == 0) {
    p.resize(p.size() - deleted.size());
  }
  return p;
}

void on_hup(uv_signal_t*, int) {
  std::string error;
  if (reopen_log_file(error)) {
    LOG_INFO("proxy", "received SIGHUP: log file reopened");
  } else {
    LOG_ERROR("proxy", "received SIGHUP: %s", error.c_str());
  }
}

void on_signal(uv_signal_t* handle, int signum) {
  auto* s = static_cast<Signals*>(handle->data);
  LOG_INFO("proxy", "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  s->proxy->shutdown();
  close_signals(s);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], kCheckFlag) == 0) return live_restart_check(argc, argv);
  // As started, before the secrets are hidden: a live restart execs them again.
  const std::vector<std::string> args(argv, argv + argc);
  Inherited inherited = take_inherited();
  ParseResult parsed = parse_args(argc, argv);
  // Passwords given as flags leave /proc/<pid>/cmdline (and ps) now; they were
  // visible there from exec until this line.
  const std::string hidden = hide_secret_args(argc, argv);
  if (parsed.exit) {
    if (inherited.active) {
      fall_back(inherited, args, "the new binary refused the flags (exit code " + std::to_string(parsed.exit_code) + ")");
    }
    return parsed.exit_code;
  }
  set_log_level(parsed.config.log_level);
  set_log_json(parsed.config.log_json);
  if (!parsed.config.log_file.empty()) {
    std::string error;
    if (!open_log_file(parsed.config.log_file, error)) {
      fprintf(stderr, "psync-proxy: --log-file: %s\n", error.c_str());
      return 2;
    }
  }
  if (!hidden.empty()) {
    LOG_WARN("proxy",
             "%s given on the command line: now hidden from the process list, but every user of this "
             "host could read it there until the proxy started; use %s (or the --config file) instead",
             hidden.c_str(),
             hidden.find(',') != std::string::npos ? "--requirepass-file and --masterauth-file"
             : hidden == "--requirepass"           ? "--requirepass-file"
                                                   : "--masterauth-file");
  }
  if (inherited.active && !inherited.error.empty()) fall_back(inherited, args, inherited.error);
  std::signal(SIGPIPE, SIG_IGN);
  // A file grown past RLIMIT_FSIZE is a write error (EFBIG), handled like a
  // full disk, not a reason to die.
  std::signal(SIGXFSZ, SIG_IGN);

  uv_loop_t* loop = uv_default_loop();
  int rc = 0;
  {
    Proxy proxy(loop, parsed.config);
    proxy.set_notifier([](const std::string& state) { sd_notify(0, state.c_str()); });
    proxy.live_restart().set_plan(
        LiveRestart::Plan{inherited.active ? inherited.handover.exe_path : own_path(), args});
    Signals signals{};
    signals.proxy = &proxy;
    uv_signal_init(loop, &signals.term);
    uv_signal_init(loop, &signals.intr);
    uv_signal_init(loop, &signals.hup);
    uv_signal_init(loop, &signals.usr2);
    signals.term.data = &signals;
    signals.intr.data = &signals;
    signals.hup.data = &signals;
    signals.usr2.data = &signals;
    uv_signal_start(&signals.term, on_signal, SIGTERM);
    uv_signal_start(&signals.intr, on_signal, SIGINT);
    uv_signal_start(&signals.hup, on_hup, SIGHUP);
    uv_signal_start(&signals.usr2, on_usr2, SIGUSR2);
    // A live restart execs with these blocked (proxy/live_restart.cpp): what
    // came meanwhile is delivered now, to the handlers above.
    unblock_control_signals();
    if (!proxy.start(inherited.active ? &inherited.handover : nullptr)) {
      if (inherited.active) fall_back(inherited, args, "the new binary could not take over: " +
                                                           (proxy.handover_refused() ? proxy.handover_error()
                                                                                     : std::string("see above")));
      rc = proxy.start_error_code();
      proxy.shutdown();
      close_signals(&signals);
    }
    uv_run(loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(loop);
  if (rc == 0) LOG_INFO("proxy", "stopped");
  return rc;
}
