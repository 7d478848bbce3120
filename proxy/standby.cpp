#include "proxy/standby.h"

#include <ctime>

#include "proxy/live_feed.h"
#include "proxy/log.h"
#include "proxy/proxy.h"

namespace psync::proxy {

namespace {
const char* kComponent = "standby";
}

const char* Standby::state_name(State s) {
  switch (s) {
    case State::kFollowing: return "following";
    case State::kActiveUnreachable: return "active_unreachable";
    case State::kTookOver: return "took_over";
  }
  return "?";
}

Standby::Standby(Proxy& proxy) : proxy_(proxy) {}

double Standby::unreachable_s() const {
  if (state_ != State::kActiveUnreachable) return 0;
  return static_cast<double>(now_ms() - unreachable_since_ms_) / 1000.0;
}

void Standby::on_second() {
  if (state_ == State::kTookOver) return;
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
  const bool silent = link.state() == Link::State::kStreaming && silent_s > c.ping_period_s + 2;
  if (reachable_link && !silent) {
    if (state_ == State::kActiveUnreachable) {
      LOG_INFO(kComponent, "the active at %s is back after %.0f s: following it", c.standby_of.str().c_str(),
               unreachable_s());
    }
    state_ = State::kFollowing;
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
  if (unreachable_s() >= c.standby_timeout_s) {
    take_over("the active at " + c.standby_of.str() + " was unreachable for " +
              std::to_string(static_cast<int64_t>(unreachable_s())) + " s");
  }
}

void Standby::take_over(const std::string& why) {
  backlog::LineageStore& store = proxy_.store();
  replid_taken_over_ = store.replid();
  takeover_offset_ = store.committed_end();
  takeover_reason_ = why;
  took_over_unix_ = time(nullptr);
  state_ = State::kTookOver;
  proxy_.become_active(why);
}

}  // namespace psync::proxy
