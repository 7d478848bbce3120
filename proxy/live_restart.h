// Live restart in place (SIGUSR2): the process execs the binary at its path
// now (that is how an upgrade is rolled out) and goes on, with the same pid
// and every socket open: the upstream link, the listeners, each replica. The
// master sees nothing (its bytes wait in the socket buffer meanwhile; a 2.6
// master never times out a replica), no replica is disconnected.
//
//   idle ─SIGUSR2─▶ checking: `<path> --live-restart-check <the same flags>`
//        runs the new binary apart; it must read this handover version and
//        keep --dir, --bind/--port and the status address (sockets cannot
//        move). Anything else (missing, not executable, bad flags, an older
//        build, a crash): refused, nothing changes, one log line says why.
//      ─▶ waiting: until nothing is in flight that an exec would lose: an
//        upstream snapshot transfer (the master's BGSAVE), a refresh
//      ─▶ pausing: the upstream link stops reading at a command boundary
//        (Link::pause_at_boundary) with none of its writes half sent
//      ─▶ exec: the store is rolled back to its commit point (the one in
//        commit.rec), the handover (proxy/handover.h) is written to --dir,
//        FD_CLOEXEC is cleared on the descriptors it names, and execv().
//
// The new image (Proxy::start with the handover) first checks everything
// (the lineage reopens from the data directory, every descriptor is the
// socket or file it should be, the settings match) and only then takes it all
// over; nothing has touched a peer before that point, so a failed check can
// still go back:
//   - the new image fails its check, or cannot read the handover: it execs
//     the previous binary again (its descriptor, inherited: the file at the
//     path may be the new one by now), which takes the same handover over;
//   - that one fails too: a plain start from the data directory in the same
//     process (replicas reconnect and continue; a SYNC master syncs again).
// If execv() itself fails, this image simply goes on. The one case left
// uncovered: a new binary that passes the check and then crashes; systemd
// (Restart=on-failure) starts it again from the data directory.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

namespace psync::proxy {

class Proxy;

// The environment variable naming the previous image's binary, as an open
// descriptor (see fall_back_to_previous_image).
constexpr const char* kPreviousExeEnv = "PSYNC_PROXY_LIVE_EXE_FD";
// The pre-flight flag: `psync-proxy --live-restart-check <flags>` parses the
// flags and prints what it would run with, as JSON; exit 0 when it can.
constexpr const char* kCheckFlag = "--live-restart-check";

class LiveRestart {
 public:
  enum class State { kIdle, kChecking, kWaiting, kPausing };
  static const char* state_name(State s);

  // What to exec: the binary's path (resolved when the process started) and
  // the flags it was started with.
  struct Plan {
    std::string exe_path;
    std::vector<std::string> argv;
  };

  explicit LiveRestart(Proxy& proxy);
  ~LiveRestart();
  LiveRestart(const LiveRestart&) = delete;
  LiveRestart& operator=(const LiveRestart&) = delete;

  void set_plan(Plan plan) { plan_ = std::move(plan); }
  // SIGUSR2.
  void request();
  // Once a second: waiting or pausing goes on (or gives up).
  void on_second();
  // Shutdown: an attempt in progress ends.
  void stop();

  State state() const { return state_; }
  const std::string& last_error() const { return last_error_; }
  int64_t last_attempt_unix() const { return last_attempt_unix_; }
  // Set by the proxy after a fallback took a handover over (what the image
  // after it said when it failed).
  void note_fallback(const std::string& why) { last_error_ = why; }
  // The new image: when the live restart it comes from was asked for.
  void restore_attempt(int64_t unix_time) { last_attempt_unix_ = unix_time; }

 private:
  static void on_check_exit(uv_process_t* process, int64_t status, int term_signal);
  static void on_check_timeout(uv_timer_t* timer);
  void check_finished(int64_t status, int term_signal);
  void try_hand_over();
  void exec_now(std::string tail);
  void failed(const std::string& why);
  void close_check_handles();

  Proxy& proxy_;
  Plan plan_;
  State state_ = State::kIdle;
  std::string last_error_;
  int64_t last_attempt_unix_ = 0;
  std::string waiting_for_;  // what the last wait was for (logged once)

  uv_process_t* check_ = nullptr;  // heap handles: closed on the loop
  uv_timer_t* check_timer_ = nullptr;
  std::string check_out_;  // the child's stdout and stderr, as files in --dir
  std::string check_err_;
};

// SIGTERM, SIGINT, SIGHUP, SIGUSR2 are blocked across the exec (the signal
// mask is inherited, handlers are not), so that one arriving before the new
// image has its handlers does not act with its default (killing the
// process); the new image unblocks them once its handlers are in place.
void block_control_signals();
void unblock_control_signals();

// The new image, when the handover or its check failed. Never returns:
// execs the previous binary (previous_exe_fd, from kPreviousExeEnv) with the
// same handover (handed_fds: the descriptors it names, made inheritable
// again), or, when this already is the previous binary (already_fallback) or
// there is none, this binary afresh with every inherited descriptor closed.
// reason is left in kFailedHandoverFile for the image after to report.
[[noreturn]] void fall_back_after_failed_handover(const std::string& state_path, const std::string& reason,
                                                  const std::vector<std::string>& argv,
                                                  const std::vector<int>& handed_fds, int previous_exe_fd,
                                                  bool already_fallback);

}  // namespace psync::proxy
