#include "proxy/standby.h"

#include <algorithm>
#include <ctime>

#include "proxy/live_feed.h"
#include "proxy/log.h"
#include "proxy/marker_client.h"
#include "proxy/proxy.h"
#include "proxy/refresher.h"

namespace psync::proxy {

namespace {
const char* kComponent = "standby";
}

const char* Standby::state_name(State s) {
  switch (s) {
    case State::kFollowing: return "following";
    case State::kActiveUnreachable: return "active_unreachable";
    case State::kTakingOver: return "taking_over";
    case State::kTookOver: return "took_over";
  }
  return "?";
}

Standby::Standby(Proxy& proxy)
    : proxy_(proxy), shadow_(std::make_unique<Refresher>(proxy, Refresher::Purpose::kShadow)) {}

Standby::~Standby() = default;

void Standby::stop() {
  shadow_->stop();
  fence_.reset();
}

void Standby::fence() {
  const Config& c = proxy_.config();
  const std::string nonce = std::string(kTakeoverMarker) + replid_taken_over_ + ":" + proxy_.store().replid();
  MarkerClient::Callbacks cb;
  cb.on_ready = [this, nonce] {
    fence_->publish(nonce);
    LOG_INFO(kComponent, "wrote the takeover marker into the master's stream (an old active that reads it stops "
             "serving)");
  };
  cb.on_failed = [](const std::string& why) {
    LOG_WARN(kComponent, "cannot write the takeover marker (%s): an old active that comes back is not told",
             why.c_str());
  };
  fence_ = std::make_unique<MarkerClient>(proxy_.loop(), c.upstream, c.masteruser, c.masterauth,
                                          Refresher::kChannel, std::move(cb));
  fence_started_ms_ = now_ms();
  fence_->start();
}

void Standby::on_new_lineage() { shadow_->abort("the mirrored lineage starts over"); }

void Standby::follow_again() {
  shadow_->abort("following again");
  state_ = State::kFollowing;
  spliced_ = false;
  unreachable_since_ms_ = 0;
  taking_over_since_ms_ = 0;
  waiting_for_peer_ = false;
  next_align_ms_ = 0;
}

void Standby::maybe_align() {
  // One fork on the master per attempt: after a failure the next one waits,
  // 30 s at first, twice as long each time, at most 15 min.
  if (shadow_->tracking()) {
    align_backoff_ms_ = 0;
    return;
  }
  const uint64_t now = now_ms();
  const uint64_t failed = shadow_->stats().failed;
  if (failed != failures_seen_) {
    failures_seen_ = failed;
    align_backoff_ms_ = align_backoff_ms_ == 0 ? 30'000 : std::min<uint64_t>(align_backoff_ms_ * 2, 900'000);
    next_align_ms_ = now + align_backoff_ms_;
  }
  if (shadow_->active() || now < next_align_ms_) return;
  if (!proxy_.store().snapshot() || !proxy_.feed().link().link_up()) return;
  std::string why = shadow_->start(failed == 0 ? "following the active" : "again after: " + shadow_->stats().last_error);
  if (!why.empty()) LOG_DEBUG(kComponent, "no own master link yet: %s", why.c_str());
}

double Standby::unreachable_s() const {
  if (state_ != State::kActiveUnreachable) return 0;
  return static_cast<double>(now_ms() - unreachable_since_ms_) / 1000.0;
}

void Standby::on_second() {
  shadow_->on_second();
  // The marker client lives a few seconds: its PUBLISH is written by then.
  if (fence_ && now_ms() - fence_started_ms_ > 5000) fence_.reset();
  if (state_ == State::kTookOver) return;
  if (state_ == State::kTakingOver) {
    if (shadow_->ready_to_splice() || !shadow_->tracking() || now_ms() - taking_over_since_ms_ >= kCatchUpMs) {
      take_over(takeover_reason_);
    }
    return;
  }
  const Config& c = proxy_.config();
  const Link& link = proxy_.feed().link();
  const uint64_t now = now_ms();
  // Down: the link to the active is not streaming (refused, reset, a full
  // resync from it counts as reachable). Silent: no byte for longer than the
  // active's PING period (a frozen process or a partition keeps the socket).
  const bool reachable_link = link.state() == Link::State::kStreaming ||
                              link.state() == Link::State::kWaitingPayload ||
                              link.state() == Link::State::kTransfer || link.state() == Link::State::kStored;
  const double silent_s = link.seconds_since_last_byte();
  const bool silent = reachable_link && silent_s > c.ping_period_s + 2;
  if (reachable_link && !silent) {
    if (state_ == State::kActiveUnreachable) {
      LOG_INFO(kComponent, "the active at %s is back after %.0f s: following it", c.standby_of.str().c_str(),
               unreachable_s());
    }
    state_ = State::kFollowing;
    maybe_align();
    return;
  }
  if (state_ == State::kFollowing) {
    state_ = State::kActiveUnreachable;
    // A silent link has been silent since its last byte.
    unreachable_since_ms_ = silent ? now - static_cast<uint64_t>(silent_s * 1000) : now;
    LOG_WARN(kComponent, "the active at %s is unreachable (%s): taking over in %.0f s unless it comes back",
             c.standby_of.str().c_str(),
             silent ? "no byte from it" : (link.last_error().empty() ? "not connected" : link.last_error().c_str()),
             c.standby_timeout_s);
  }
  if (unreachable_s() < c.standby_timeout_s) return;
  // Two standbys of each other (a pair started together, or both restarted):
  // the peer answers but is no active. Exactly one of them takes over: the
  // one with more of the lineage, else the smaller run_id; the other goes on
  // following, and follows the new active.
  const Link::PeerInfo& peer = link.peer();
  if (peer.run_id == process_run_id()) {
    LOG_ERROR(kComponent, "--standby-of %s names this proxy itself: it serves as the active",
              c.standby_of.str().c_str());
    take_over("its --standby-of is its own address");
    return;
  }
  const bool peer_is_standby = peer.role == "standby" && peer.seen_ms != 0 &&
                               (link.state() == Link::State::kStreaming || now - peer.seen_ms < 30'000);
  if (peer_is_standby) {
    const uint64_t mine = proxy_.store().snapshot() ? proxy_.store().committed_end() : 0;
    const bool preferred = mine != peer.offset ? mine > peer.offset : process_run_id() < peer.run_id;
    if (!preferred) {
      if (!waiting_for_peer_) {
        LOG_INFO(kComponent, "the peer at %s is a standby too, with %s of the lineage: it takes over, this proxy "
                 "follows it", c.standby_of.str().c_str(), peer.offset > mine ? "more" : "as much");
      }
      waiting_for_peer_ = true;
      return;
    }
  }
  waiting_for_peer_ = false;
  take_over(peer_is_standby ? "the peer at " + c.standby_of.str() + " is a standby too, and this proxy has " +
                                  (proxy_.store().committed_end() > peer.offset ? "more of the lineage" : "the smaller run_id")
                            : "the active at " + c.standby_of.str() + " was unreachable for " +
                                  std::to_string(static_cast<int64_t>(unreachable_s())) + " s");
}

void Standby::take_over(const std::string& why) {
  takeover_reason_ = why;
  if (state_ != State::kTakingOver && shadow_->tracking() && !shadow_->ready_to_splice()) {
    // The own link has not delivered all the active did: it will (the master
    // sends both the same stream), within moments.
    state_ = State::kTakingOver;
    taking_over_since_ms_ = now_ms();
    LOG_INFO(kComponent, "taking over: waiting for the own master link to deliver the %zu commands the active "
             "delivered first", shadow_->tracker()->behind());
    return;
  }
  backlog::LineageStore& store = proxy_.store();
  replid_taken_over_ = store.replid();
  takeover_offset_ = store.committed_end();  // the active's last whole command
  took_over_unix_ = time(nullptr);
  state_ = State::kTookOver;
  Refresher::Splice splice;
  if (shadow_->ready_to_splice()) {
    splice = shadow_->take_splice();
  } else {
    const std::string lost = shadow_->tracking() ? "the own master link did not catch up with the active within " +
                                                       std::to_string(kCatchUpMs / 1000) + " s"
                             : shadow_->stats().last_error.empty() ? std::string("no own master link was aligned yet")
                                                                   : shadow_->stats().last_error;
    LOG_WARN(kComponent, "no splice: %s", lost.c_str());
    shadow_->abort("the takeover goes on without it");
  }
  spliced_ = static_cast<bool>(splice.link);
  proxy_.become_active(why, splice.link ? &splice : nullptr);
  if (!replid_taken_over_.empty()) fence();
}

}  // namespace psync::proxy
