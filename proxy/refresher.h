// The snapshot refresher: a fresh snapshot of the master at an exact offset X
// of the proxy's own stream, within the lineage: nobody is disconnected, no
// replica full-resyncs, the master forks once (as for one new replica).
//
//   idle ─▶ marking: a plain client (MarkerClient) writes marker 0,
//           PUBLISH __psync_proxy__ <attempt>:0, and waits to see it in the
//           live stream (a master that refuses PUBLISH costs no fork)
//        ─▶ syncing: a second Link sends SYNC; markers 1, 2, ... every
//           100 ms until its RDB transfer starts (the fork is before it),
//           then one last marker
//        ─▶ aligning: the RDB is on disk; the new link's stream up to its
//           first marker k is held and compared with the live stream
//           between markers k-1 and k (protocol/aligner.h)
//        ─▶ storing: verified at X: the RDB is fsynced and renamed off the
//           loop, then installed in the lineage store with the prefix
//           SELECT <db at X>; old log segments are trimmed
//        ─▶ idle
//
// Any mismatch, timeout, refused PUBLISH, lost link or ambiguity: the new RDB
// is discarded, one log line says why, and the next attempt comes after
// --snapshot-min-interval (or a BGSAVE). An unverified snapshot is never
// installed.
//
// A standby's own master link (Purpose::kShadow, proxy/standby.h) is placed
// the same way in the stream it mirrors from the active, but its RDB is not
// needed (the standby has the active's snapshot) and its link is kept:
//
//   ... aligning ─▶ tracking: both streams go on through a StreamTracker
//        (protocol/stream_tracker.h), which knows at every moment which of
//        the own link's commands the active has not delivered yet
//   ─▶ take_splice() at a takeover: the own link and the bytes to append.
//
// Any mismatch or a lost link ends the tracking (logged); the standby tries
// again later.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol/aligner.h"
#include "protocol/stream_tracker.h"
#include "proxy/link.h"
#include "proxy/marker_client.h"

namespace psync::proxy {

class Proxy;

class Refresher : public LinkConsumer {
 public:
  enum class State { kIdle, kMarking, kSyncing, kAligning, kStoring, kTracking };
  enum class Purpose { kRefresh, kShadow };
  static const char* state_name(State s);
  static constexpr const char* kChannel = "__psync_proxy__";

  explicit Refresher(Proxy& proxy, Purpose purpose = Purpose::kRefresh);
  ~Refresher() override;
  Refresher(const Refresher&) = delete;
  Refresher& operator=(const Refresher&) = delete;

  // Starts a refresh now; "" when started, else why not (for BGSAVE's error).
  std::string start(const std::string& trigger);
  // Shutdown: ends an attempt quietly.
  void stop();
  // Ends an attempt: logged, counted as failed (unless it was idle).
  void abort(const std::string& why);
  // Once a second: the automatic trigger, timeouts, freeing retired links.
  void on_second();
  // The live feed committed `bytes`, whole commands from offset `first`, in
  // which the channel's name occurs.
  void on_live_bytes(std::string_view bytes, uint64_t first);
  // A shadow: every piece the live feed appended (at_boundary: it ends a
  // command, and is committed).
  void on_live_piece(std::string_view bytes, bool at_boundary, uint64_t first);
  bool wants_every_piece() const { return purpose_ == Purpose::kShadow && active(); }
  // The live feed's link was lost: what it appended and never committed was
  // taken back out of the log.
  void on_live_rollback() {
    if (tracker_) tracker_->drop_live_partial();
  }

  // ----- A standby's own link (Purpose::kShadow) -----
  bool tracking() const { return state_ == State::kTracking && tracker_ && !tracker_->failed(); }
  const protocol::StreamTracker* tracker() const { return tracker_.get(); }
  // Tracking, and nothing the live stream delivered is missing on the own link.
  bool ready_to_splice() const { return tracking() && tracker_->behind() == 0; }
  struct Splice {
    std::unique_ptr<Link> link;  // streaming; its consumer is still this Refresher
    // Its splice() is what to append and commit after the live stream's last
    // byte; then its own_partial(): the start of a command the link delivers
    // the rest of.
    std::unique_ptr<protocol::StreamTracker> tracker;
  };
  // Only when ready_to_splice(); the Refresher is idle afterwards.
  Splice take_splice();

  State state() const { return state_; }
  bool active() const { return state_ != State::kIdle; }

  struct Stats {
    uint64_t done = 0;
    uint64_t failed = 0;
    std::string last_error;          // why the last attempt failed ("" if it did not)
    std::string last_trigger;
    int64_t last_attempt_unix = 0;
    int64_t last_done_unix = 0;
    double last_duration_s = 0;
    // The last verified alignment.
    uint64_t last_offset = 0;        // X
    int64_t last_db = 0;             // db at X
    uint64_t last_marker = 0;        // k
    uint64_t last_matched = 0;       // commands of the new link matched
    uint64_t markers_sent = 0;       // in the current / last attempt
  };
  const Stats& stats() const { return stats_; }
  // A live restart carries them over (the next automatic attempt keeps to
  // --snapshot-min-interval counted from the last one).
  void restore_stats(const Stats& stats) { stats_ = stats; }
  // The refresh link while one is open (for /status), or null.
  const Link* link() const { return link_.get(); }
  const std::string& trigger() const { return stats_.last_trigger; }

 private:
  struct Store;
  static void on_marker_timer(uv_timer_t* t);
  static void on_store_work(uv_work_t* req);
  static void on_store_done(uv_work_t* req, int status);

  void start_link();
  void tick_markers();
  void send_marker();
  void scan_fresh();
  void try_align();
  void finish(const std::string& why, bool ok);
  // Stops the second link and the marker client; they are freed on the next
  // tick (this may run inside their own callbacks).
  void retire_connections();
  std::string nonce(uint64_t k) const;
  std::optional<uint64_t> our_marker(std::string_view cmd) const;

  // LinkConsumer
  std::optional<backlog::UpstreamPosition> resume_point() override { return std::nullopt; }
  void on_rdb(std::unique_ptr<backlog::SnapshotWriter> rdb,
              std::optional<backlog::UpstreamPosition> full_resync) override;
  bool on_continue(const std::string&, uint64_t) override { return true; }
  bool on_stream(std::string_view bytes, bool at_boundary, uint64_t master_offset) override;
  bool on_ping(uint64_t) override { return true; }
  uint64_t ack_offset() override { return 0; }
  void on_lost(const std::string& why, bool was_streaming) override;
  void on_storage_error(const std::string& what) override;
  void on_bad_stream() override {}

  // The shadow's alignment succeeded at marker k: the tracker starts.
  void start_tracking(uint64_t end_k, const protocol::Alignment& a);

  Proxy& proxy_;
  Purpose purpose_;
  const char* component_;
  State state_ = State::kIdle;
  Stats stats_;
  uint64_t started_ms_ = 0;
  uint64_t state_ms_ = 0;  // when the current state began
  std::string attempt_;    // random: this attempt's markers are "<attempt>:<k>"
  std::string lineage_;    // the lineage the attempt refreshes
  uint64_t next_marker_ = 0;
  bool final_marker_sent_ = false;
  std::map<uint64_t, uint64_t> live_marks_;  // k -> end offset of marker k in the live stream
  std::map<uint64_t, uint64_t> live_counts_; // k -> the live link's command count there

  std::unique_ptr<MarkerClient> marker_;
  std::unique_ptr<Link> link_;
  // Finished links and clients, freed on the next tick (they may be inside
  // their own callbacks when an attempt ends).
  std::vector<std::unique_ptr<Link>> retired_links_;
  std::vector<std::unique_ptr<MarkerClient>> retired_markers_;
  uv_timer_t* marker_timer_ = nullptr;

  std::unique_ptr<backlog::SnapshotWriter> rdb_;
  std::string fresh_;           // the new link's stream from the fork (bounded)
  size_t fresh_scanned_ = 0;    // fresh_ searched for the channel up to here
  std::optional<uint64_t> fresh_marker_;  // k of the first marker on the new link
  size_t fresh_marker_end_ = 0;           // fresh_ bytes through that marker
  bool fresh_at_boundary_ = true;         // fresh_ ends at the end of a command
  std::unique_ptr<protocol::StreamTracker> tracker_;
  std::vector<protocol::StreamCommand> fresh_commands_;  // through that marker
  Store* storing_ = nullptr;
};

}  // namespace psync::proxy
