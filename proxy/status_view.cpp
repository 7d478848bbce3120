#include "proxy/status_view.h"

#include <unistd.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "proxy/log.h"
#include "proxy/replica_session.h"
#include "proxy/build_info.h"
#include "proxy/live_feed.h"
#include "proxy/live_restart.h"
#include "proxy/refresher.h"
#include "proxy/standby.h"
#include "proxy/tls.h"
#include "protocol/text.h"

namespace psync::proxy {

std::string log_retention_text(uint64_t backlog_size_configured, bool refresh_enabled, bool refresh_failing) {
  const std::string size = human_bytes(static_cast<double>(backlog_size_configured));
  if (!refresh_enabled) {
    return "every byte since the snapshot, until the next upstream SYNC (--snapshot-refresh no): the disk "
           "grows with the writes; --backlog-size (" + size + ") applies once snapshots are refreshed";
  }
  std::string text = "from --backlog-size (" + size + ") before the snapshot's offset on, and what a full resync "
                     "in progress still reads; the snapshot is refreshed within the lineage (see refresh)";
  if (refresh_failing) {
    text += "; the last refresh failed (refresh.last_error): until one succeeds the log keeps every byte since "
            "the snapshot and the disk grows, as it does until the next upstream SYNC";
  }
  return text;
}

StatusView Proxy::status_view() const {
  const Link& up = feed_->link();
  StatusView v;
  v.proxy.version = PSYNC_PROXY_VERSION;
  v.proxy.replid = replid();
  v.proxy.offset = visible_end();
  v.proxy.uptime_seconds = uptime_seconds();
  v.proxy.pid = getpid();
  v.proxy.build = build_id();
  v.proxy.started_unix = started_unix_;
  v.proxy.live_restarts = live_restarts_;
  v.proxy.live_restart_state = LiveRestart::state_name(live_restart_->state());
  v.proxy.live_restart_last_error = live_restart_->last_error();
  v.proxy.live_restart_last_attempt_unix = live_restart_->last_attempt_unix();
  v.proxy.live_restart_fallbacks = live_restart_fallbacks_;
  v.proxy.role = role_name();
  v.proxy.replid2 = store_.replid2();
  v.proxy.second_offset = store_.second_offset();
  if (standby_) {
    StatusView::StandbyPart sb;
    sb.active = config_.standby_of.str();
    sb.state = Standby::state_name(standby_->state());
    if (!standby_->active()) sb.link_state = Link::state_name(feed_->link().state());
    sb.unreachable_seconds = standby_->unreachable_s();
    sb.timeout_seconds = config_.standby_timeout_s;
    sb.took_over_unix = standby_->took_over_unix();
    sb.takeover_offset = standby_->takeover_offset();
    sb.replid_taken_over = standby_->replid_taken_over();
    sb.takeover_reason = standby_->takeover_reason();
    sb.spliced = standby_->spliced();
    const Refresher& sh = standby_->shadow();
    sb.alignment_state = Refresher::state_name(sh.state());
    if (sh.link()) sb.alignment_link_state = Link::state_name(sh.link()->state());
    sb.alignment_last_error = sh.stats().last_error;
    sb.alignment_attempts_failed = sh.stats().failed;
    if (const protocol::StreamTracker* t = sh.tracker()) {
      sb.alignment_matched = t->matched();
      sb.alignment_ahead = t->ahead();
      sb.alignment_behind = t->behind();
    }
    v.standby = std::move(sb);
  }
  if (config_.tls_port != 0) {
    StatusView::TlsPart t;
    t.port = config_.tls_port;
    t.auth_clients = config_.tls_auth_clients == TlsAuthClients::kYes  ? "yes"
                     : config_.tls_auth_clients == TlsAuthClients::kNo ? "no"
                                                                       : "optional";
    t.ktls_possible = tls_ && tls_->ktls_possible();
    t.handshake_failures = counters_.tls_handshake_failures;
    v.tls = t;
  }
  v.proxy.run_id = process_run_id();
  v.proxy.port = config_.port;
  v.proxy.psync_floor = psync_floor();
  v.proxy.max_clients = config_.max_clients;
  v.proxy.blocked_clients = clients_in_wait();
  v.proxy.commands_since_snapshot = commands_since_snapshot();

  v.upstream.address = up.options().address.str();  // a standby: the active it follows
  v.upstream.state = Link::state_name(up.state());
  v.upstream.link_up = up.link_up();
  v.upstream.last_error = up.last_error();
  v.upstream.sync_count = up.sync_count();
  v.upstream.rdb_bytes_received = up.rdb_bytes_received();
  v.upstream.rdb_bytes_expected = up.rdb_bytes_expected();
  v.upstream.stream_bytes = up.stream_bytes();
  v.upstream.commands = up.commands();
  v.upstream.seconds_since_last_byte = up.seconds_since_last_byte();
  v.upstream.mode = Link::mode_name(up.mode());
  v.upstream.version = up.master_version();
  v.upstream.replid = feed_->master_replid();
  if (up.mode() == Link::Mode::kPsync) v.upstream.offset = feed_->master_offset();
  v.upstream.partial_resyncs = up.partial_resyncs();
  v.upstream.total_bytes = up.total_bytes();
  v.upstream.total_commands = up.total_commands();

  v.log.first_offset = store_.log().first_offset();
  v.log.last_offset = store_.log().last_offset();
  v.log.bytes_on_disk = store_.log().bytes_on_disk();
  v.log.segments = store_.log().segment_count();
  v.log.open_files = store_.log().open_files();
  v.log.backlog_size_configured = config_.backlog_size;
  v.log.refresh_enabled = config_.snapshot_refresh;
  {
    const Refresher& rf = *refresher_;
    const Refresher::Stats& st = rf.stats();
    StatusView::RefreshPart& r = v.refresh;
    r.enabled = config_.snapshot_refresh;
    r.state = Refresher::state_name(rf.state());
    r.link_state = rf.link() ? Link::state_name(rf.link()->state()) : "";
    r.done = st.done;
    r.failed = st.failed;
    r.last_error = st.last_error;
    r.last_trigger = protocol::peer_text(st.last_trigger, 256);
    r.last_attempt_unix = st.last_attempt_unix;
    r.last_done_unix = st.last_done_unix;
    r.last_duration_seconds = st.last_duration_s;
    r.markers_sent = st.markers_sent;
    r.aligned = st.done > 0;
    r.offset = st.last_offset;
    r.db = st.last_db;
    r.marker = st.last_marker;
    r.matched = st.last_matched;
  }

  v.storage.dir = config_.dir;
  v.storage.ok = !storage_failing_;
  v.storage.last_error = storage_error_;
  v.storage.last_error_unix = storage_error_unix_;

  if (const auto& snap = store_.snapshot()) {
    StatusView::SnapshotPart s;
    s.offset = snap->offset();
    s.fullresync_offset = snap->fullresync_offset();
    s.bytes = snap->size();
    s.replid = snap->replid();
    s.created_unix = snap->created_unix();
    s.age_seconds = static_cast<double>(time(nullptr) - snap->created_unix());
    v.snapshot = std::move(s);
  }

  for (const auto& s : sessions_) {
    if (s->closing()) continue;
    StatusView::ReplicaPart r;
    r.address = s->address();
    r.ip = s->ip();
    r.listening_port = s->listening_port();
    r.state = ReplicaSession::state_name(s->state());
    r.past_handshake = s->past_handshake();
    r.sync = ReplicaSession::sync_name(s->sync_kind());
    r.acked_offset = s->acked_offset();
    r.sent_offset = s->cursor() == 0 ? 0 : s->cursor() - 1;
    r.lag_bytes = lag_bytes(*s);
    r.lag_seconds = s->seconds_since_ack();
    if (s->state() == ReplicaSession::State::kSendBulk && store_.snapshot()) r.bulk_bytes_sent = s->bulk_sent();
    r.tls = s->tls();
    r.ktls_send = s->ktls_send();
    v.replicas.push_back(std::move(r));
  }
  v.counters = counters_;
  return v;
}

std::string Proxy::status_json() const { return render_status_json(status_view()); }

std::string render_status_json(const StatusView& v) {
  using nlohmann::json;
  auto seconds_or_null = [](double s) -> json { return s < 0 ? json(nullptr) : json(s); };
  json j;
  j["proxy"] = {{"version", v.proxy.version},
                {"replid", v.proxy.replid},
                {"offset", v.proxy.offset},
                {"uptime_seconds", v.proxy.uptime_seconds},
                {"pid", v.proxy.pid},
                {"build", v.proxy.build},
                {"started_unix", v.proxy.started_unix},
                {"live_restarts", v.proxy.live_restarts},
                {"live_restart",
                 {{"state", v.proxy.live_restart_state},
                  {"last_error", v.proxy.live_restart_last_error},
                  {"last_attempt_unix", v.proxy.live_restart_last_attempt_unix
                                            ? json(v.proxy.live_restart_last_attempt_unix)
                                            : json(nullptr)},
                  {"fallbacks", v.proxy.live_restart_fallbacks}}},
                {"role", v.proxy.role},
                {"replid2", v.proxy.replid2.empty() ? json(nullptr) : json(v.proxy.replid2)},
                {"second_offset", v.proxy.second_offset < 0 ? json(nullptr) : json(v.proxy.second_offset)}};
  if (v.tls) {
    j["tls"] = {{"port", v.tls->port},
                {"auth_clients", v.tls->auth_clients},
                {"ktls", v.tls->ktls_possible ? "asked for" : "unavailable"},
                {"handshake_failures", v.tls->handshake_failures}};
  } else {
    j["tls"] = nullptr;
  }
  if (v.standby) {
    const auto& sb = *v.standby;
    j["standby"] = {{"active", sb.active},
                    {"state", sb.state},
                    {"link_state", sb.link_state.empty() ? json(nullptr) : json(sb.link_state)},
                    {"unreachable_seconds", sb.unreachable_seconds},
                    {"timeout_seconds", sb.timeout_seconds},
                    {"took_over_unix", sb.took_over_unix ? json(sb.took_over_unix) : json(nullptr)},
                    {"takeover_offset", sb.took_over_unix ? json(sb.takeover_offset) : json(nullptr)},
                    {"replid_taken_over", sb.replid_taken_over.empty() ? json(nullptr) : json(sb.replid_taken_over)},
                    {"takeover_reason", sb.takeover_reason},
                    {"spliced", sb.spliced},
                    {"alignment",
                     {{"state", sb.alignment_state},
                      {"link_state", sb.alignment_link_state.empty() ? json(nullptr) : json(sb.alignment_link_state)},
                      {"last_error", sb.alignment_last_error},
                      {"attempts_failed", sb.alignment_attempts_failed},
                      {"matched_commands", sb.alignment_matched},
                      {"ahead_commands", sb.alignment_ahead},
                      {"behind_commands", sb.alignment_behind}}}};
  } else {
    j["standby"] = nullptr;
  }
  const auto& up = v.upstream;
  j["upstream"] = {{"address", up.address},
                   {"state", up.state},
                   {"link_up", up.link_up},
                   {"last_error", up.last_error},
                   {"sync_count", up.sync_count},
                   {"rdb_bytes_received", up.rdb_bytes_received},
                   {"rdb_bytes_expected", up.rdb_bytes_expected ? json(*up.rdb_bytes_expected) : json(nullptr)},
                   {"stream_bytes", up.stream_bytes},
                   {"commands", up.commands},
                   {"seconds_since_last_byte", seconds_or_null(up.seconds_since_last_byte)},
                   {"mode", up.mode},
                   {"version", up.version},
                   {"replid", up.replid},
                   {"offset", up.offset ? json(*up.offset) : json(nullptr)}};
  j["log"] = {{"first_offset", v.log.first_offset},
              {"last_offset", v.log.last_offset},
              {"bytes_on_disk", v.log.bytes_on_disk},
              {"segments", v.log.segments},
              {"open_files", v.log.open_files},
              {"backlog_size_configured", v.log.backlog_size_configured},
              {"retention", log_retention_text(v.log.backlog_size_configured, v.log.refresh_enabled,
                                                !v.refresh.last_error.empty())}};
  {
    const auto& r = v.refresh;
    json alignment = nullptr;
    if (r.aligned) alignment = {{"offset", r.offset}, {"db", r.db}, {"marker", r.marker}, {"matched_commands", r.matched}};
    j["refresh"] = {{"enabled", r.enabled},
                    {"state", r.state},
                    {"link_state", r.link_state},
                    {"done", r.done},
                    {"failed", r.failed},
                    {"last_error", r.last_error},
                    {"last_trigger", r.last_trigger},
                    {"last_attempt_unix", r.last_attempt_unix ? json(r.last_attempt_unix) : json(nullptr)},
                    {"last_done_unix", r.last_done_unix ? json(r.last_done_unix) : json(nullptr)},
                    {"last_duration_seconds", r.last_duration_seconds},
                    {"markers_sent", r.markers_sent},
                    {"alignment", alignment}};
  }
  j["storage"] = {{"dir", v.storage.dir},
                  {"ok", v.storage.ok},
                  {"last_error", v.storage.last_error},
                  {"last_error_unix", v.storage.last_error_unix ? json(v.storage.last_error_unix) : json(nullptr)}};
  if (v.snapshot) {
    j["snapshot"] = {{"offset", v.snapshot->offset},
                     {"fullresync_offset", v.snapshot->fullresync_offset},
                     {"bytes", v.snapshot->bytes},
                     {"replid", v.snapshot->replid},
                     {"created_unix", v.snapshot->created_unix},
                     {"age_seconds", v.snapshot->age_seconds}};
  } else {
    j["snapshot"] = nullptr;
  }
  json replicas = json::array();
  for (const auto& s : v.replicas) {
    json r = {{"address", s.address},
              {"listening_port", s.listening_port},
              {"state", s.state},
              {"sync", s.sync},
              {"acked_offset", s.acked_offset},
              {"sent_offset", s.sent_offset},
              {"lag_bytes", s.lag_bytes},
              {"lag_seconds", seconds_or_null(s.lag_seconds)},
              {"tls", s.tls},
              {"ktls", s.ktls_send}};
    if (s.bulk_bytes_sent) r["bulk_bytes_sent"] = *s.bulk_bytes_sent;
    replicas.push_back(std::move(r));
  }
  j["replicas"] = std::move(replicas);
  const Counters& c = v.counters;
  j["counters"] = {{"sync_full", c.sync_full},
                   {"sync_partial_ok", c.sync_partial_ok},
                   {"sync_partial_err", c.sync_partial_err},
                   {"upstream_partial_resyncs", up.partial_resyncs},
                   {"connections_received", c.connections_received},
                   {"rejected_connections", c.rejected_connections},
                   {"rejected_out_of_fds", c.rejected_out_of_fds},
                   {"closed_replica_timeouts", c.closed_replica_timeouts}};
  // Never throws (the liveness probe must not kill the proxy): peer strings
  // are ASCII-safe already (protocol/text.h); any other byte that is not
  // UTF-8 (a --dir path) is replaced by U+FFFD.
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace psync::proxy
