#include "proxy/refresher.h"

#include <cstring>

#include "backlog/spill_queue.h"
#include "protocol/numbers.h"
#include "protocol/text.h"
#include "proxy/live_feed.h"
#include "proxy/log.h"
#include "proxy/proxy.h"

namespace psync::proxy {

namespace {
constexpr uint64_t kMarkerPeriodMs = 100;
constexpr uint64_t kMarkingTimeoutMs = 10'000;   // marker 0 must show in the live stream by then
constexpr uint64_t kAligningTimeoutMs = 60'000;  // after the RDB, the first marker and its live twin
constexpr size_t kMaxFresh = 64 << 20;           // new-link bytes held until its first marker
constexpr uint64_t kMaxWindow = 64 << 20;        // live bytes between two markers read back
constexpr uint64_t kMaxHeld = 4ull << 30;        // a shadow: commands one stream is ahead, on disk beyond...
constexpr uint64_t kHeldInMemory = 4 << 20;      // ...this much in memory

using protocol::select_command;
}  // namespace

struct Refresher::Store {
  uv_work_t req;
  Refresher* self;
  std::unique_ptr<backlog::SnapshotWriter> writer;
  std::string replid;
  uint64_t offset;
  std::string prefix;
  uint64_t commands_after = 0;
  std::shared_ptr<backlog::Snapshot> snapshot;
  std::string error;
};

const char* Refresher::state_name(State s) {
  switch (s) {
    case State::kIdle: return "idle";
    case State::kMarking: return "marking";
    case State::kSyncing: return "syncing";
    case State::kAligning: return "aligning";
    case State::kStoring: return "storing";
    case State::kTracking: return "tracking";
  }
  return "?";
}

Refresher::Refresher(Proxy& proxy, Purpose purpose)
    : proxy_(proxy), purpose_(purpose), component_(purpose == Purpose::kShadow ? "shadow" : "refresh") {
  marker_timer_ = new uv_timer_t;
  uv_timer_init(proxy_.loop(), marker_timer_);
  marker_timer_->data = this;
}

Refresher::~Refresher() { stop(); }

std::string Refresher::nonce(uint64_t k) const { return attempt_ + ":" + std::to_string(k); }

std::optional<uint64_t> Refresher::our_marker(std::string_view cmd) const {
  auto n = protocol::marker_nonce(cmd, kChannel);
  if (!n || n->size() <= attempt_.size() + 1 || !n->starts_with(attempt_) || (*n)[attempt_.size()] != ':') {
    return std::nullopt;
  }
  return protocol::parse_u64(n->substr(attempt_.size() + 1));
}

std::string Refresher::start(const std::string& trigger) {
  const Config& c = proxy_.config();
  if (!marker_timer_) return "the proxy is shutting down";
  if (!c.snapshot_refresh && purpose_ == Purpose::kRefresh) return "snapshot refresh is off (--snapshot-refresh no)";
  if (active()) return std::string("a snapshot refresh is already in progress (") + state_name(state_) + ")";
  if (!proxy_.store().snapshot()) return "no snapshot yet: the first one comes from the upstream SYNC";
  if (!proxy_.feed().link().link_up()) return "the upstream link is down";
  state_ = State::kMarking;
  started_ms_ = state_ms_ = now_ms();
  attempt_ = random_replid().substr(0, 16);
  lineage_ = proxy_.store().replid();
  next_marker_ = 0;
  final_marker_sent_ = false;
  live_marks_.clear();
  live_counts_.clear();
  fresh_.clear();
  fresh_scanned_ = 0;
  fresh_marker_.reset();
  fresh_marker_end_ = 0;
  fresh_at_boundary_ = true;
  fresh_commands_.clear();
  tracker_.reset();
  stats_.last_trigger = trigger;
  stats_.last_attempt_unix = time(nullptr);
  stats_.markers_sent = 0;
  LOG_INFO(component_, "%s (%s): marker client to %s",
           purpose_ == Purpose::kShadow ? "aligning a master link of its own with the active's stream"
                                        : "refreshing the snapshot",
           trigger.c_str(), c.upstream.str().c_str());
  MarkerClient::Callbacks cb;
  cb.on_ready = [this] { send_marker(); };  // marker 0: is PUBLISH replicated at all?
  cb.on_failed = [this](const std::string& why) { abort("the marker client: " + why); };
  marker_ = std::make_unique<MarkerClient>(proxy_.loop(), c.upstream, c.masteruser, c.masterauth, kChannel,
                                           std::move(cb));
  marker_->start();
  return "";
}

void Refresher::send_marker() {
  if (!marker_ || !marker_->ready()) return;
  marker_->publish(nonce(next_marker_++));
  stats_.markers_sent++;
}

void Refresher::on_live_bytes(std::string_view bytes, uint64_t first) {
  if (!active()) return;
  int64_t db = 0;  // not used: only the markers' ends are taken
  std::vector<protocol::StreamCommand> cmds;
  std::string error;
  // Whole commands (a false hit in the last piece of a large command does not split: ignored).
  protocol::split_commands(bytes, first, db, cmds, error);
  for (const auto& c : cmds) {
    if (auto k = our_marker(c.bytes)) {
      live_marks_[*k] = c.end;
      // The link has counted the commands of this whole run: about right.
      live_counts_[*k] = proxy_.feed().link().total_commands();
    }
  }
  if (state_ == State::kMarking && live_marks_.count(0)) {
    LOG_INFO(component_, "marker 0 is in the live stream at offset %llu: opening a second SYNC link",
             static_cast<unsigned long long>(live_marks_[0]));
    start_link();
  } else if (state_ == State::kAligning && fresh_marker_) {
    try_align();
  }
}

void Refresher::start_link() {
  const Config& c = proxy_.config();
  LinkOptions o;
  o.name = component_;
  o.address = c.upstream;
  o.masterauth = c.masterauth;
  o.masteruser = c.masteruser;
  o.listening_port = c.port;
  o.mode = UpstreamMode::kSync;  // the fork is found with markers, whatever the master speaks
  o.connect_timeout_s = c.upstream_connect_timeout_s;
  o.read_timeout_s = c.upstream_timeout_s;
  o.dir = c.dir;
  o.rdb_tag = component_;
  o.retry = false;
  state_ = State::kSyncing;
  state_ms_ = now_ms();
  link_ = std::make_unique<Link>(proxy_.loop(), std::move(o), *this);
  link_->start();
  uv_timer_start(marker_timer_, on_marker_timer, kMarkerPeriodMs, kMarkerPeriodMs);
}

void Refresher::on_marker_timer(uv_timer_t* t) { static_cast<Refresher*>(t->data)->tick_markers(); }

void Refresher::tick_markers() {
  if (state_ != State::kSyncing && state_ != State::kAligning) {
    if (marker_timer_) uv_timer_stop(marker_timer_);
    return;
  }
  // Markers until the RDB transfer starts: the fork is before it. One more
  // after that is certainly after the fork; then none are needed.
  const Link::State ls = link_ ? link_->state() : Link::State::kStopped;
  const bool before_transfer = ls == Link::State::kResolving || ls == Link::State::kConnecting ||
                               ls == Link::State::kHandshake || ls == Link::State::kWaitingPayload;
  if (before_transfer) {
    send_marker();
  } else if (!final_marker_sent_) {
    send_marker();
    final_marker_sent_ = true;
    if (marker_timer_) uv_timer_stop(marker_timer_);
  }
}

void Refresher::on_rdb(std::unique_ptr<backlog::SnapshotWriter> rdb,
                       std::optional<backlog::UpstreamPosition> /*full_resync*/) {
  state_ = State::kAligning;
  state_ms_ = now_ms();
  LOG_INFO(component_, "RDB of %s received; waiting for the first marker on the new link",
           human_bytes(static_cast<double>(rdb->bytes())).c_str());
  if (purpose_ == Purpose::kShadow) {
    rdb->abort();  // the standby serves the active's snapshot: only the stream is needed
  } else {
    rdb_ = std::move(rdb);
  }
  if (!final_marker_sent_) tick_markers();
  link_->start_streaming(0);
}

bool Refresher::on_stream(std::string_view bytes, bool at_boundary, uint64_t /*master_offset*/) {
  if (state_ == State::kTracking) {
    if (tracker_ && !tracker_->feed_own(bytes, at_boundary)) abort("the own link: " + tracker_->error());
    return true;
  }
  // Past the first marker a refresh needs nothing more; a shadow keeps what
  // follows it for the tracker.
  if (state_ != State::kAligning || (fresh_marker_ && purpose_ == Purpose::kRefresh)) return true;
  if (fresh_.size() + bytes.size() > kMaxFresh) {
    abort("more than " + human_bytes(static_cast<double>(kMaxFresh)) +
          " of writes on the new link before its first marker");
    return true;
  }
  fresh_.append(bytes);
  fresh_at_boundary_ = at_boundary;
  if (at_boundary && !fresh_marker_) scan_fresh();
  return true;
}

void Refresher::scan_fresh() {
  const size_t channel_len = std::strlen(kChannel);
  size_t from = fresh_scanned_ > channel_len ? fresh_scanned_ - channel_len : 0;
  fresh_scanned_ = fresh_.size();
  if (fresh_.find(kChannel, from) == std::string::npos) return;
  int64_t db = 0;  // a SYNC replica's stream starts in db 0 (verified by the alignment)
  std::vector<protocol::StreamCommand> cmds;
  std::string error;
  if (!protocol::split_commands(fresh_, 1, db, cmds, error)) {
    abort("the new link's stream cannot be split into commands: " + error);
    return;
  }
  for (size_t i = 0; i < cmds.size(); ++i) {
    if (auto k = our_marker(cmds[i].bytes)) {
      fresh_marker_ = *k;
      fresh_marker_end_ = static_cast<size_t>(cmds[i].end);  // offsets from 1: the bytes through it
      cmds.resize(i + 1);
      fresh_commands_ = std::move(cmds);
      LOG_INFO(component_, "marker %llu is the first on the new link, after %zu commands",
               static_cast<unsigned long long>(*k), i);
      try_align();
      return;
    }
  }
}

void Refresher::try_align() {
  if (state_ != State::kAligning || !fresh_marker_) return;
  const uint64_t k = *fresh_marker_;
  if (k == 0) {
    abort("the new link's stream starts before marker 0 (a copy of another replica's buffer, from an "
          "earlier fork): it cannot be placed");
    return;
  }
  auto end_k = live_marks_.find(k);
  auto end_prev = live_marks_.find(k - 1);
  if (end_k == live_marks_.end() || end_prev == live_marks_.end()) return;  // the live link has not got there yet
  if (proxy_.store().replid() != lineage_) {
    abort("a new lineage started meanwhile");
    return;
  }
  const uint64_t from = end_prev->second + 1;
  const uint64_t to = end_k->second;
  const backlog::ReplicationLog& log = proxy_.store().log();
  if (to < from || to > proxy_.store().committed_end() || !log.contains(from)) {
    abort("the live stream between markers " + std::to_string(k - 1) + " and " + std::to_string(k) +
          " is not in the log");
    return;
  }
  if (to + 1 - from > kMaxWindow) {
    abort("more than " + human_bytes(static_cast<double>(kMaxWindow)) + " of writes between two markers");
    return;
  }
  std::string window(to + 1 - from, '\0');
  try {
    window.resize(log.read(from, window.data(), window.size()));
  } catch (const std::exception& e) {
    abort(std::string("cannot read the live stream back: ") + e.what());
    return;
  }
  int64_t db = 0;  // marker k-1 ran in db 0 (the marker client never selects another)
  std::vector<protocol::StreamCommand> live;
  std::string error;
  if (!protocol::split_commands(window, from, db, live, error)) {
    abort("the live stream between two markers cannot be split into commands: " + error);
    return;
  }
  protocol::Alignment a = protocol::align(live, end_prev->second, 0, fresh_commands_, kChannel, nonce(k));
  if (!a.ok) {
    abort("the new link does not match the live stream: " + a.reason);
    return;
  }
  stats_.last_offset = a.offset;
  stats_.last_db = a.db;
  stats_.last_marker = k;
  stats_.last_matched = a.matched;
  if (purpose_ == Purpose::kShadow) {
    start_tracking(end_k->second, a);
    return;
  }
  LOG_INFO(component_,
           "the new RDB is the master's state at offset %llu (db %lld) of the live stream: %zu commands "
           "after the fork matched up to marker %llu; storing it",
           static_cast<unsigned long long>(a.offset), static_cast<long long>(a.db), a.matched,
           static_cast<unsigned long long>(k));
  retire_connections();  // the new link and the markers are done with
  state_ = State::kStoring;
  state_ms_ = now_ms();
  auto* s = new Store;
  s->req.data = s;
  s->self = this;
  s->writer = std::move(rdb_);
  s->replid = lineage_;
  s->offset = a.offset;
  s->prefix = select_command(a.db);
  const uint64_t now = proxy_.feed().link().total_commands();
  const uint64_t at_k = live_counts_.count(k) ? live_counts_[k] : now;
  s->commands_after = (now - std::min(now, at_k)) + a.matched;
  storing_ = s;
  uv_queue_work(proxy_.loop(), &s->req, on_store_work, on_store_done);
}

void Refresher::on_live_piece(std::string_view bytes, bool at_boundary, uint64_t first) {
  if (state_ == State::kTracking) {
    if (tracker_ && !tracker_->feed_live(bytes, at_boundary)) abort("the live stream: " + tracker_->error());
    return;
  }
  if (at_boundary && memmem(bytes.data(), bytes.size(), kChannel, std::strlen(kChannel)) != nullptr) {
    on_live_bytes(bytes, first);
  }
}

void Refresher::start_tracking(uint64_t end_k, const protocol::Alignment& a) {
  // Both streams are right after marker k, in db 0 (the marker client's).
  // The live stream past it: what is committed, and a command appended in
  // part (its rest comes as pieces, on_live_piece).
  const backlog::LineageStore& store = proxy_.store();
  const backlog::ReplicationLog& log = store.log();
  const uint64_t committed = store.committed_end();
  const uint64_t appended = log.last_offset();
  std::string live(appended - end_k, '\0');
  try {
    live.resize(log.read(end_k + 1, live.data(), live.size()));
  } catch (const std::exception& e) {
    abort(std::string("cannot read the live stream back: ") + e.what());
    return;
  }
  if (live.size() != appended - end_k) {
    abort("the live stream after the marker is not all in the log");
    return;
  }
  // What one side holds ahead of the other: a few MB in memory, the rest on
  // disk (backlog/spill_queue.h), at most kMaxHeld.
  const std::string& dir = proxy_.config().dir;
  auto t = std::make_unique<protocol::StreamTracker>(kMaxHeld, std::make_unique<backlog::SpillQueue>(dir, kHeldInMemory),
                                                     std::make_unique<backlog::SpillQueue>(dir, kHeldInMemory));
  const size_t whole = static_cast<size_t>(committed - end_k);
  bool ok = t->feed_live(std::string_view(live).substr(0, whole), true);
  if (ok && live.size() > whole) ok = t->feed_live(std::string_view(live).substr(whole), false);
  if (ok && fresh_.size() > fresh_marker_end_) {
    ok = t->feed_own(std::string_view(fresh_).substr(fresh_marker_end_), fresh_at_boundary_);
  }
  if (!ok) {
    abort("the streams differ right after the marker: " + t->error());
    return;
  }
  tracker_ = std::move(t);
  fresh_.clear();
  fresh_.shrink_to_fit();
  fresh_commands_.clear();
  // The markers are done with; the link stays.
  if (marker_timer_) uv_timer_stop(marker_timer_);
  if (marker_) {
    marker_->close();
    retired_markers_.push_back(std::move(marker_));
  }
  state_ = State::kTracking;
  state_ms_ = now_ms();
  stats_.done++;
  stats_.last_done_unix = time(nullptr);
  stats_.last_error.clear();
  stats_.last_duration_s = static_cast<double>(now_ms() - started_ms_) / 1000.0;
  LOG_INFO(component_,
           "the own master link is aligned with the active's stream at marker %llu (%zu commands matched): "
           "a takeover can go on from the active's last byte without a full resync",
           static_cast<unsigned long long>(stats_.last_marker), a.matched);
}

Refresher::Splice Refresher::take_splice() {
  Splice sp;
  if (!ready_to_splice()) return sp;
  sp.tracker = std::move(tracker_);
  sp.link = std::move(link_);
  state_ = State::kIdle;
  if (marker_timer_) uv_timer_stop(marker_timer_);
  return sp;
}

void Refresher::retire_connections() {
  if (marker_timer_) uv_timer_stop(marker_timer_);
  if (link_) {
    link_->stop();
    retired_links_.push_back(std::move(link_));
  }
  if (marker_) {
    marker_->close();
    retired_markers_.push_back(std::move(marker_));
  }
}

void Refresher::on_store_work(uv_work_t* req) {
  auto* s = static_cast<Store*>(req->data);
  try {
    s->snapshot = s->writer->commit(s->replid, s->offset, s->prefix);
  } catch (const std::exception& e) {
    s->error = e.what();
  }
}

void Refresher::on_store_done(uv_work_t* req, int /*status*/) {
  std::unique_ptr<Store> s(static_cast<Store*>(req->data));
  Refresher* self = s->self;
  self->storing_ = nullptr;
  if (self->state_ != State::kStoring) {  // stopped meanwhile
    if (s->snapshot) s->snapshot->discard();
    return;
  }
  if (!s->error.empty()) {
    self->proxy_.storage_failed("cannot store the refreshed snapshot: " + s->error);
    self->finish("cannot store the new RDB: " + s->error, false);
    return;
  }
  if (self->proxy_.store().replid() != s->replid) {
    s->snapshot->discard();
    self->finish("a new lineage started while the new RDB was stored", false);
    return;
  }
  try {
    self->proxy_.install_refreshed_snapshot(s->snapshot, s->commands_after);
  } catch (const std::exception& e) {
    s->snapshot->discard();
    self->finish(std::string("the new snapshot cannot be installed: ") + e.what(), false);
    return;
  }
  self->finish("", true);
}

void Refresher::on_lost(const std::string& why, bool /*was_streaming*/) {
  if (state_ == State::kSyncing || state_ == State::kAligning || state_ == State::kTracking) {
    abort((purpose_ == Purpose::kShadow ? "the own master link: " : "the second link: ") + why);
  }
}

void Refresher::on_storage_error(const std::string& what) { proxy_.storage_failed(what); }

void Refresher::abort(const std::string& why) { finish(why, false); }

void Refresher::finish(const std::string& why, bool ok) {
  if (state_ == State::kIdle) return;
  const double secs = static_cast<double>(now_ms() - started_ms_) / 1000.0;
  stats_.last_duration_s = secs;
  if (ok) {
    stats_.done++;
    stats_.last_done_unix = time(nullptr);
    stats_.last_error.clear();
    LOG_INFO(component_, "snapshot refreshed in %.1f s: full resyncs are now served from offset %llu",
             secs, static_cast<unsigned long long>(stats_.last_offset));
  } else {
    stats_.failed++;
    stats_.last_error = protocol::peer_text(why, 1024);
    if (purpose_ == Purpose::kShadow) {
      LOG_WARN(component_, "the standby's own master link is not aligned with the active's stream: %s (a "
               "takeover now would start a new lineage; the standby tries again later)", stats_.last_error.c_str());
    } else {
      LOG_WARN(component_, "snapshot refresh abandoned after %.1f s: %s (the current snapshot stays; next try "
               "after --snapshot-min-interval or a BGSAVE)", secs, stats_.last_error.c_str());
    }
  }
  state_ = State::kIdle;
  retire_connections();
  if (rdb_) {
    rdb_->abort();
    rdb_.reset();
  }
  fresh_.clear();
  fresh_.shrink_to_fit();
  fresh_commands_.clear();
  tracker_.reset();
  live_marks_.clear();
  live_counts_.clear();
}

void Refresher::stop() {
  // Quietly (not counted), and for good: every handle is closed here, while
  // the loop still runs, so that it can end.
  state_ = State::kIdle;
  link_.reset();
  marker_.reset();
  retired_links_.clear();
  retired_markers_.clear();
  if (rdb_) rdb_->abort();
  rdb_.reset();
  if (marker_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(marker_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    marker_timer_ = nullptr;
  }
}

void Refresher::on_second() {
  retired_links_.clear();
  retired_markers_.clear();
  const uint64_t in_state = now_ms() - state_ms_;
  if (state_ == State::kMarking && in_state > kMarkingTimeoutMs) {
    abort("marker 0 did not appear in the live stream within 10 s (does the master replicate PUBLISH?)");
  } else if (state_ == State::kAligning && in_state > kAligningTimeoutMs) {
    abort(fresh_marker_ ? "the live stream did not reach the new link's first marker within 60 s"
                        : "no marker on the new link within 60 s of its RDB");
  }
  if (active() || purpose_ == Purpose::kShadow) return;
  // The automatic trigger: the log since the snapshot is larger than
  // --snapshot-refresh-ratio times the snapshot, and than --backlog-size.
  const Config& c = proxy_.config();
  const auto& snap = proxy_.store().snapshot();
  if (!c.snapshot_refresh || !snap || !proxy_.feed().link().link_up()) return;
  const uint64_t since = proxy_.store().bytes_since_snapshot();
  const double ratio_bytes = c.snapshot_refresh_ratio * static_cast<double>(snap->size());
  if (static_cast<double>(since) <= ratio_bytes || since <= c.backlog_size) return;
  const int64_t now = time(nullptr);
  if (stats_.last_attempt_unix != 0 &&
      static_cast<double>(now - stats_.last_attempt_unix) < c.snapshot_min_interval_s) {
    return;
  }
  start("the log since the snapshot holds " + human_bytes(static_cast<double>(since)) + ", more than " +
        std::to_string(c.snapshot_refresh_ratio).substr(0, 4) + " x the snapshot (" +
        human_bytes(static_cast<double>(snap->size())) + ") and --backlog-size");
}

}  // namespace psync::proxy
