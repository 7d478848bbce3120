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
  Proxy* proxy;
};

void on_signal(uv_signal_t* handle, int signum) {
  auto* s = static_cast<Signals*>(handle->data);
  LOG_INFO("proxy", "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  s->proxy->shutdown();
  uv_close(reinterpret_cast<uv_handle_t*>(&s->term), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->intr), nullptr);
}
}  // namespace

int main(int argc, char** argv) {
  ParseResult parsed = parse_args(argc, argv);
  if (parsed.exit) return parsed.exit_code;
  set_log_level(parsed.config.log_level);
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
    signals.term.data = &signals;
    signals.intr.data = &signals;
    uv_signal_start(&signals.term, on_signal, SIGTERM);
    uv_signal_start(&signals.intr, on_signal, SIGINT);
    if (!proxy.start()) {
      rc = 1;
      proxy.shutdown();
      uv_close(reinterpret_cast<uv_handle_t*>(&signals.term), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&signals.intr), nullptr);
    }
    uv_run(loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(loop);
  if (rc == 0) LOG_INFO("proxy", "stopped");
  return rc;
}
