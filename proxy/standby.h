// The standby: a psync-proxy that follows another one (the active, given by
// --standby-of) and takes its lineage over when the active is gone.
//
//   following ─▶ (the link to the active down) active_unreachable
//        ▲                 │  back within --standby-timeout
//        └─────────────────┘
//   active_unreachable ─▶ (--standby-timeout passed) took_over: the proxy is
//        the active now
//
// While following, the proxy's live feed mirrors the active (proxy/live_feed.h:
// the same replid, the same offsets, the same bytes): replicas may be served
// by either proxy and PSYNC from one to the other. The proxy writes nothing of
// its own into that log (no PINGs): it would no longer be the active's. It
// refreshes its own snapshot as the active does (proxy/refresher.h): that
// places an RDB at an offset of the log and writes nothing to it, so its
// retention works as the active's.
//
// At the takeover the lineage goes on under a new replid, the old one kept as
// replid2 up to the committed end + 1 (backlog::LineageStore::switch_replid),
// as a promoted Redis replica does: a replica that PSYNCs the old replid at or
// before that point gets +CONTINUE; one that got bytes past it from the dying
// active gets a full resync. Invariant: the proxy never appends a byte under
// the active's replid that the active did not send.
//
// What follows the takeover. While following, the standby keeps a master
// link of its own (one SYNC, once) aligned with the active's stream: placed
// with PUBLISH markers as a snapshot refresh is, then tracked command by
// command (proxy/refresher.h, Purpose::kShadow; protocol/stream_tracker.h).
// So it knows at every moment which master commands come after the last one
// the active delivered. At the takeover it appends exactly those (with the
// SELECTs they need), and its own link becomes the live link: replicas go on
// with +CONTINUE, nobody full-resyncs, the master forks nothing more. If
// the own link lags (the active delivered commands it has not received yet)
// the takeover waits for it, up to kCatchUpMs.
//
// Without an aligned link (the master refuses PUBLISH, the alignment failed
// or was lost, the link lagged too long) the proxy cannot know which master
// command comes next, so it never guesses: it syncs with the master afresh
// and starts a new lineage (every replica full-resyncs once), serving the old
// one with PINGs until that snapshot is stored.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace psync::proxy {

class MarkerClient;
class Proxy;
class Refresher;

// After a takeover the new active writes PUBLISH __psync_proxy__
// takeover:<old replid>:<new replid> into the master's stream (fencing): an
// old active that still follows the master (it was frozen, or cut off from
// the standby only) reads it and stops serving (Proxy::superseded). So one
// lineage never has two sources for long; it needs a master that takes
// PUBLISH, as the splice does.
inline constexpr std::string_view kTakeoverMarker = "takeover:";

class Standby {
 public:
  enum class State { kFollowing, kActiveUnreachable, kTakingOver, kTookOver };
  static const char* state_name(State s);
  static constexpr uint64_t kCatchUpMs = 5000;

  explicit Standby(Proxy& proxy);
  ~Standby();
  // Shutdown.
  void stop();
  // The mirrored lineage starts over: the own link's alignment is void.
  void on_new_lineage();
  // This proxy was the active and a standby took its lineage over (the
  // takeover marker came in): it follows --standby-of again, from the start.
  void follow_again();
  // The own master link (proxy/refresher.h, Purpose::kShadow).
  Refresher& shadow() { return *shadow_; }
  const Refresher& shadow() const { return *shadow_; }
  // Whether the takeover went on without a full resync.
  bool spliced() const { return spliced_; }

  // Once a second: notices an unreachable active, and takes over.
  void on_second();

  State state() const { return state_; }
  bool active() const { return state_ == State::kTookOver; }
  // Seconds the active has been unreachable (0 while following).
  double unreachable_s() const;
  // The takeover, once done: when, at which offset, the replid taken over.
  int64_t took_over_unix() const { return took_over_unix_; }
  uint64_t takeover_offset() const { return takeover_offset_; }
  const std::string& replid_taken_over() const { return replid_taken_over_; }
  const std::string& takeover_reason() const { return takeover_reason_; }

 private:
  void take_over(const std::string& why);
  void maybe_align();

  // Writes the takeover marker (see kTakeoverMarker).
  void fence();

  Proxy& proxy_;
  std::unique_ptr<Refresher> shadow_;
  std::unique_ptr<MarkerClient> fence_;
  uint64_t fence_started_ms_ = 0;
  State state_ = State::kFollowing;
  uint64_t taking_over_since_ms_ = 0;
  bool spliced_ = false;
  uint64_t next_align_ms_ = 0;
  uint64_t align_backoff_ms_ = 0;
  uint64_t failures_seen_ = 0;
  bool waiting_for_peer_ = false;  // the peer is a standby too, and the one to take over
  uint64_t unreachable_since_ms_ = 0;
  int64_t took_over_unix_ = 0;
  uint64_t takeover_offset_ = 0;
  std::string replid_taken_over_;
  std::string takeover_reason_;
};

}  // namespace psync::proxy
