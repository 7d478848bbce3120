// psync-proxy: replicates a SYNC-only Redis master once and serves Redis
// replicas with PSYNC from its own log and snapshot.
#include <uv.h>

#include <csignal>
#include <cstdio>

#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/proxy.h"

using namespace psync::proxy;

namespace {
struct Signals {
  uv_signal_t term;
  uv_signal_t intr;
  uv_signal_t hup;
  Proxy* proxy;
};

void close_signals(Signals* s) {
  uv_close(reinterpret_cast<uv_handle_t*>(&s->term), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->intr), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->hup), nullptr);
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
  ParseResult parsed = parse_args(argc, argv);
  // Passwords given as flags leave /proc/<pid>/cmdline (and ps) now; they were
  // visible there from exec until this line.
  const std::string hidden = hide_secret_args(argc, argv);
  if (parsed.exit) return parsed.exit_code;
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
  std::signal(SIGPIPE, SIG_IGN);
  // A file grown past RLIMIT_FSIZE is a write error (EFBIG), handled like a
  // full disk, not a reason to die.
  std::signal(SIGXFSZ, SIG_IGN);

  uv_loop_t* loop = uv_default_loop();
  int rc = 0;
  {
    Proxy proxy(loop, parsed.config);
    Signals signals{};
    signals.proxy = &proxy;
    uv_signal_init(loop, &signals.term);
    uv_signal_init(loop, &signals.intr);
    uv_signal_init(loop, &signals.hup);
    signals.term.data = &signals;
    signals.intr.data = &signals;
    signals.hup.data = &signals;
    uv_signal_start(&signals.term, on_signal, SIGTERM);
    uv_signal_start(&signals.intr, on_signal, SIGINT);
    uv_signal_start(&signals.hup, on_hup, SIGHUP);
    if (!proxy.start()) {
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
