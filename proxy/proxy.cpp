#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "protocol/numbers.h"
#include "protocol/reply.h"
#include "proxy/build_info.h"
#include "proxy/handover.h"
#include "proxy/listener.h"
#include "proxy/live_restart.h"
#include "proxy/log.h"
#include "proxy/replica_session.h"
#include "proxy/status_http.h"
#include "proxy/live_feed.h"
#include "proxy/refresher.h"
#include "proxy/standby.h"
#include "proxy/tls.h"
#include "protocol/aligner.h"
#include "proxy/status_view.h"

namespace psync::proxy {

namespace {
const char* kComponent = "proxy";




// Creates dir (and parents) with mode 0700 where missing.
bool make_data_dir(const std::string& dir, std::string& error) {
  std::error_code ec;
  std::filesystem::path p(dir);
  std::filesystem::path cur;
  for (const auto& part : p) {
    cur /= part;
    if (std::filesystem::exists(cur, ec)) continue;
    if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
      error = "cannot create " + cur.string() + ": " + strerror(errno);
      return false;
    }
  }
  if (!std::filesystem::is_directory(p, ec)) {
    error = dir + " is not a directory";
    return false;
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    error = "cannot write to " + dir + ": " + strerror(errno);
    return false;
  }
  return true;
}
// Redis checks maxclients against RLIMIT_NOFILE at start; the proxy says
// once that connections past the limit will be refused (proxy/listener.h).
void warn_if_few_descriptors(const Config& config) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return;
  // Replica connections, status connections, and some 32 for the proxy itself.
  const uint64_t want = config.max_clients + 64 + 32;
  if (r.rlim_cur >= want) return;
  LOG_WARN(kComponent,
           "the open files limit is %llu, below the %llu that --max-clients %zu needs: connections "
           "past it are refused with an error; raise it (ulimit -n, LimitNOFILE=) or lower "
           "--max-clients",
           static_cast<unsigned long long>(r.rlim_cur), static_cast<unsigned long long>(want),
           config.max_clients);
}
}  // namespace

namespace {
std::string& run_id_storage() {
  static std::string id = random_replid();
  return id;
}
}  // namespace

std::string process_run_id() { return run_id_storage(); }

void set_process_run_id(const std::string& id) { run_id_storage() = id; }

std::string random_replid() {
  static std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string id(40, '0');
  for (size_t i = 0; i < 40; i += 8) {
    uint32_t r = rd();
    for (size_t j = 0; j < 8; ++j) id[i + j] = hex[(r >> (4 * j)) & 0xf];
  }
  return id;
}

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

Proxy::Proxy(uv_loop_t* loop, Config config)
    : loop_(loop),
      config_(std::move(config)),
      start_ms_(now_ms()),
      started_unix_(time(nullptr)),
      store_(config_.dir, config_.segment_bytes),
      standby_(config_.has_standby_of ? std::make_unique<Standby>(*this) : nullptr),
      feed_(std::make_unique<LiveFeed>(*this, config_.has_standby_of ? LiveFeed::Source::kActive
                                                                     : LiveFeed::Source::kMaster)),
      refresher_(std::make_unique<Refresher>(*this)),
      live_restart_(std::make_unique<LiveRestart>(*this)),
      status_(std::make_unique<StatusServer>(*this)) {}

Proxy::~Proxy() = default;

double Proxy::uptime_seconds() const { return static_cast<double>(now_ms() - start_ms_) / 1000.0; }

bool Proxy::open_store() {
  try {
    // Reopen the lineage an earlier run left (backlog/manifest.h), or start
    // afresh. What the directory holds is never served at a wrong offset: a
    // manifest that cannot be trusted is an error (or, with --dir-recover
    // yes, a fresh start that says what it discarded).
    std::string what;
    backlog::LineageStore::Reopen r = backlog::LineageStore::Reopen::kNone;
    try {
      r = store_.open(what);
    } catch (const std::exception& e) {
      r = backlog::LineageStore::Reopen::kRefused;
      what = config_.dir + ": cannot reopen the lineage: " + e.what();
    }
    if (r == backlog::LineageStore::Reopen::kRefused && !config_.dir_recover) {
      LOG_ERROR(kComponent, "%s (start with --dir-recover yes to discard it and start afresh)", what.c_str());
      start_error_code_ = 2;
      return false;
    }
    if (r == backlog::LineageStore::Reopen::kReopened) {
      LOG_INFO(kComponent, "%s", what.c_str());
      commands_at_snapshot_ = 0;
    } else {
      if (r != backlog::LineageStore::Reopen::kNone) {
        LOG_WARN(kComponent, "%s: starting a new lineage, discarding what %s holds", what.c_str(), config_.dir.c_str());
      }
      size_t removed = backlog::clean_data_dir(config_.dir);
      if (removed) LOG_INFO(kComponent, "removed %zu files of an earlier run from %s", removed, config_.dir.c_str());
      store_.reset(1);
    }
  } catch (const std::exception& e) {
    LOG_ERROR(kComponent, "cannot prepare %s: %s", config_.dir.c_str(), e.what());
    return false;
  }
  return true;
}

bool Proxy::start(const Handover* handover) {
  std::string error;
  if (!make_data_dir(config_.dir, error)) {
    LOG_ERROR(kComponent, "--dir: %s", error.c_str());
    return false;
  }
  if (handover) {
    handover_error_ = check_handover(*handover);
    if (!handover_error_.empty()) {
      handover_refused_ = true;
      return false;
    }
  } else {
    ::unlink((config_.dir + "/" + kHandoverFile).c_str());  // of a process that is gone
    if (!open_store()) return false;
  }
  store_.set_listener([this] { notify_sessions(); });

  // The replica port: plain non-blocking sockets polled by libuv, so that
  // sessions can send with sendfile(2).
  listener_ = make_replica_listener("replicas", false);
  bool listening = handover ? listener_->adopt(handover->replica_listener_fd, error)
                            : listener_->listen(config_.bind, config_.port, 128, error);
  if (!listening) {
    LOG_ERROR(kComponent, "%s", error.c_str());
    return false;
  }
  warn_if_few_descriptors(config_);

  // The TLS replica port (proxy/tls.h). Not handed over by a live restart:
  // a new image binds it again (its sessions reconnect).
  if (config_.tls_port != 0 || config_.status_tls) {
    tls_ = std::make_unique<TlsContext>();
    error = tls_->load(config_);
    if (!error.empty()) {
      LOG_ERROR(kComponent, "%s", error.c_str());
      return false;
    }
  }
  if (config_.tls_port != 0) {
    tls_listener_ = make_replica_listener("replicas (TLS)", true);
    if (!tls_listener_->listen(config_.bind, config_.tls_port, 128, error)) {
      LOG_ERROR(kComponent, "--tls-port: %s", error.c_str());
      return false;
    }
    LOG_INFO(kComponent, "TLS replicas on %s:%u (client certificates: %s; kernel TLS: %s)", config_.bind.c_str(),
             config_.tls_port,
             config_.tls_auth_clients == TlsAuthClients::kYes  ? "required"
             : config_.tls_auth_clients == TlsAuthClients::kNo ? "not asked for"
                                                               : "checked if given",
             tls_->ktls_possible() ? "asked for" : "not available (the kernel's tls module is not loaded)");
  }

  if (config_.status_port != 0) {
    bool ok = handover && handover->status_listener_fd >= 0
                  ? status_->adopt(handover->status_listener_fd, error)
                  : status_->start(config_.status_bind, config_.status_port, error);
    if (!ok) {
      LOG_ERROR(kComponent, "%s", error.c_str());
      return false;
    }
  }

  uv_timer_init(loop_, &ping_timer_);
  ping_timer_.data = this;
  auto ping_ms = static_cast<uint64_t>(config_.ping_period_s * 1000);
  uv_timer_start(&ping_timer_, on_ping_timer, ping_ms, ping_ms);
  uv_timer_init(loop_, &keepalive_timer_);
  keepalive_timer_.data = this;
  uv_timer_start(&keepalive_timer_, on_keepalive_timer, 1000, 1000);
  timers_started_ = true;

  if (handover) {
    take_over(*handover);
  } else {
    LOG_INFO(kComponent, "psync-proxy %s: replicas on %s:%u, status on %s://%s:%u/status, data in %s",
             build_id().c_str(), config_.bind.c_str(), config_.port, config_.status_tls ? "https" : "http",
             config_.status_bind.c_str(),
             config_.status_port, config_.dir.c_str());
    feed_->start();
  }
  notify("READY=1\nSTATUS=serving replicas on " + config_.bind + ":" + std::to_string(config_.port));
  return true;
}

std::string Proxy::check_handover(const Handover& h) {
  if (build_fails_adoption()) return "this is a test build that refuses every live restart handover";
  if (h.pid != static_cast<int64_t>(getpid())) {
    return "the handover is of process " + std::to_string(h.pid) + ", this is " + std::to_string(getpid());
  }
  if (h.dir != config_.dir || h.bind != config_.bind || h.port != config_.port || h.status_bind != config_.status_bind ||
      h.status_port != config_.status_port) {
    return "the settings do not match the handed-over sockets (--dir, --bind, --port, --status-bind, --status-port)";
  }
  auto is_socket = [](int fd) {
    struct stat st {};
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  };
  auto is_listening = [](int fd) {
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
  };
  if (!is_listening(h.replica_listener_fd)) return "the replica listener (descriptor " + std::to_string(h.replica_listener_fd) + ") is not listening";
  if (h.status_listener_fd >= 0 && !is_listening(h.status_listener_fd)) return "the status listener is not listening";
  if (config_.status_port != 0 && h.status_listener_fd < 0) return "no status listener was handed over";
  if (h.upstream.fd >= 0 && !is_socket(h.upstream.fd)) return "the upstream connection is not a socket";
  for (const auto& s : h.sessions) {
    if (!is_socket(s.fd)) return "the connection of replica " + s.ip + ":" + std::to_string(s.port) + " is not a socket";
    if (s.has_bulk) {
      struct stat st {};
      if (fstat(s.bulk.fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != s.bulk.size) {
        return "the snapshot being sent to " + s.ip + ":" + std::to_string(s.port) + " is not the file it was";
      }
    }
  }
  // The lineage, from the data directory: the commit record the previous
  // image wrote at its last commit is of this boot, so it reopens exactly.
  std::string what;
  backlog::LineageStore::Reopen r = backlog::LineageStore::Reopen::kRefused;
  try {
    r = store_.open(what);
  } catch (const std::exception& e) {
    what = e.what();
  }
  if (r != backlog::LineageStore::Reopen::kReopened) return "the lineage did not reopen from " + config_.dir + ": " + what;
  LOG_INFO(kComponent, "%s", what.c_str());
  return "";
}

void Proxy::take_over(const Handover& h) {
  counters_ = h.counters;
  start_ms_ = h.start_ms;
  started_unix_ = h.started_unix;
  live_restarts_ = h.live_restarts;
  live_restart_fallbacks_ = h.live_restart_fallbacks;
  set_process_run_id(h.run_id);
  refresher_->restore_stats(h.refresh);
  live_restart_->restore_attempt(h.live_restart_attempt_unix);
  next_session_id_ = h.next_session_id;
  {
    // An image after this one failed and this one took over again: say why.
    const std::string failed_path = config_.dir + "/" + kFailedHandoverFile;
    std::ifstream f(failed_path);
    std::string why;
    if (f && std::getline(f, why)) {
      ++live_restart_fallbacks_;
      live_restart_->note_fallback("the new binary did not take over (" + why + "): the previous one did");
    }
    ::unlink(failed_path.c_str());
  }
  LOG_INFO(kComponent, "psync-proxy %s took over from %s (live restart %llu): replicas on %s:%u, status on "
           "http://%s:%u/status, data in %s",
           build_id().c_str(), h.from_build.c_str(), static_cast<unsigned long long>(live_restarts_),
           config_.bind.c_str(), config_.port, config_.status_bind.c_str(), config_.status_port,
           config_.dir.c_str());

  // Sessions: a snapshot being sent is the store's current one (shared), or
  // an older one, unlinked already, that lives on in its descriptor.
  std::map<int, std::shared_ptr<backlog::Snapshot>> snapshots;
  for (const auto& s : h.sessions) {
    std::shared_ptr<backlog::Snapshot> bulk;
    if (s.has_bulk) {
      auto it = snapshots.find(s.bulk.fd);
      if (it != snapshots.end()) {
        bulk = it->second;
      } else {
        const auto& current = store_.snapshot();
        if (current && current->path() == s.bulk.path && current->offset() == s.bulk.offset &&
            current->size() == s.bulk.size) {
          ::close(s.bulk.fd);
          bulk = current;
        } else {
          bulk = std::make_shared<backlog::Snapshot>(s.bulk.path, s.bulk.fd, s.bulk.size, s.bulk.offset, s.bulk.replid,
                                                     s.bulk.created_unix, s.bulk.prefix);
        }
        snapshots[s.bulk.fd] = bulk;
      }
    }
    std::string error;
    auto session = ReplicaSession::adopt(*this, s, std::move(bulk), error);
    if (!session) {
      LOG_WARN("replica", "cannot go on with %s:%d after the live restart: %s (closing it)", s.ip.c_str(), s.port,
               error.c_str());
      ::close(s.fd);
      continue;
    }
    sessions_.push_back(std::move(session));
  }

  Link& link = feed_->link();
  Link::Adopted stats{h.upstream.mode == "psync" ? Link::Mode::kPsync : Link::Mode::kSync,
                      h.upstream.master_version, h.upstream.sync_count, h.upstream.partial_resyncs,
                      h.upstream.total_bytes, h.upstream.total_commands};
  commands_at_snapshot_ = h.upstream.total_commands > h.commands_since_snapshot
                              ? h.upstream.total_commands - h.commands_since_snapshot
                              : 0;
  bool adopted = false;
  if (h.upstream.fd >= 0 && h.upstream.address != config_.upstream.str()) {
    LOG_INFO(kComponent, "--upstream changed (%s -> %s): the connection to the old one is closed",
             h.upstream.address.c_str(), config_.upstream.str().c_str());
    ::close(h.upstream.fd);
  } else if (h.upstream.fd >= 0) {
    std::string error;
    adopted = link.adopt(h.upstream.fd, stats, store_.upstream().offset, h.upstream.tail, error);
    if (!adopted) {
      LOG_ERROR(kComponent, "%s: connecting to the master again", error.c_str());
      ::close(h.upstream.fd);
    }
  }
  if (!adopted) feed_->start();
  ::unlink((config_.dir + "/" + kHandoverFile).c_str());
}

void Proxy::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  LOG_INFO(kComponent, "shutting down");
  notify("STOPPING=1");
  live_restart_->stop();
  if (listener_) listener_->close();
  if (tls_listener_) tls_listener_->close();
  // No copy of the list needed: closing defers deletion (see session_closed).
  for (auto& s : sessions_) s->close("the proxy is shutting down");
  refresher_->stop();
  if (standby_) standby_->stop();
  feed_->stop();
  try {
    store_.close_cleanly();  // the lineage reopens at this exact point, after a reboot too
  } catch (const std::exception& e) {
    LOG_WARN(kComponent, "cannot sync %s at shutdown: %s (the next start may begin a new lineage)",
             config_.dir.c_str(), e.what());
  }
  status_->stop();
  if (timers_started_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&ping_timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&keepalive_timer_), nullptr);
    timers_started_ = false;
  }
}

std::unique_ptr<Listener> Proxy::make_replica_listener(const char* name, bool tls) {
  return std::make_unique<Listener>(
      loop_, name, "--bind", "-ERR max number of clients reached (psync-proxy is out of file descriptors)\r\n",
      [this] {
        counters_.connections_received++;
        counters_.rejected_connections++;
        counters_.rejected_out_of_fds++;
      },
      [this, tls](int fd, const sockaddr_storage& peer) { accept_replica(fd, peer, tls); });
}

void Proxy::accept_replica(int fd, const sockaddr_storage& ss, bool tls) {
  if (stopping_) {
    ::close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // A peer whose host vanished is noticed by TCP too: keepalive probes on an
  // idle connection (--replica-timeout idle, then 3 probes a third of it
  // apart). With bytes in flight, ReplicaSession::on_second judges clients
  // that never ACK by their socket (see replica_session.h).
  int idle = std::max(1, static_cast<int>(config_.replica_timeout_s));
  int interval = std::max(1, idle / 3);
  int probes = 3;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  std::string ip;
  int port = 0;
  address_parts(ss, ip, port);
  counters_.connections_received++;
  if (protected_mode_refuses(config_, ip)) {
    refuse(fd, ip, port,
           "-DENIED psync-proxy is running in protected mode: it listens on a non-loopback "
           "address (--bind " + config_.bind + ") with no password, so it only accepts "
           "connections from loopback. To fix it, either set a password with --requirepass "
           "(and masterauth on the replicas), or --bind to a loopback address, or, if you are "
           "sure the port is not reachable by strangers, start with --protected-mode no.\r\n",
           "protected mode", counters_.rejected_protected_mode);
    return;
  }
  if (sessions_.size() >= config_.max_clients) {
    refuse(fd, ip, port, "-ERR max number of clients reached\r\n",
           "--max-clients " + std::to_string(config_.max_clients) + " reached",
           counters_.rejected_max_clients);
    return;
  }
  auto session = std::make_unique<ReplicaSession>(*this, next_session_id_++, fd, ip, port);
  LOG_DEBUG("replica", "connection from %s%s", session->address().c_str(), tls ? " (TLS port)" : "");
  if (tls) {
    SSL* ssl = tls_->accept_on(fd);
    if (!ssl) {
      LOG_WARN("replica", "cannot start TLS with %s: %s", session->address().c_str(), TlsContext::errors().c_str());
      return;  // deleted here, closing its socket
    }
    session->use_tls(ssl);
  }
  if (!session->start()) {
    // Never listed, no handle: deleted right here (closing its socket).
    LOG_WARN("replica", "cannot watch the socket of %s: closing it", session->address().c_str());
    return;
  }
  sessions_.push_back(std::move(session));
}

void Proxy::refuse(int fd, const std::string& ip, int port, const std::string& reply,
                   const std::string& why, uint64_t& reason_counter) {
  counters_.rejected_connections++;
  reason_counter++;
  LOG_WARN("replica", "refused connection from %s:%d: %s", ip.c_str(), port, why.c_str());
  refuse_connection(fd, reply);
}

void Proxy::session_closed(ReplicaSession* session) {
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
    if (it->get() == session) {
      sessions_.erase(it);
      return;
    }
  }
}

bool is_loopback_ip(std::string_view ip) {
  if (ip == "::1") return true;
  if (ip.rfind("::ffff:", 0) == 0) ip.remove_prefix(7);
  in_addr a{};
  std::string s(ip);
  return inet_pton(AF_INET, s.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool protected_mode_refuses(const Config& config, std::string_view peer_ip) {
  return config.protected_mode && config.requirepass.empty() && !is_loopback_ip(config.bind) &&
         !is_loopback_ip(peer_ip);
}

bool constant_time_equals(std::string_view a, std::string_view b) {
  // Every byte of the longer string is looked at, whatever the content.
  size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

bool Proxy::check_password(std::optional<std::string_view> user, std::string_view pass) const {
  if (config_.requirepass.empty()) return false;
  bool ok = constant_time_equals(pass, config_.requirepass);
  // AUTH <pass> (a replica with masterauth only) is the password alone;
  // AUTH <user> <pass> must name --requireuser.
  return ok && (!user || *user == config_.requireuser);
}

void Proxy::storage_failed(const std::string& what) {
  storage_error_ = what;
  storage_error_unix_ = time(nullptr);
  if (!storage_failing_) {
    LOG_ERROR("storage", "%s (replicas online go on being served from what is on disk)", what.c_str());
  }
  storage_failing_ = true;
}

void Proxy::storage_ok() {
  if (storage_failing_) LOG_INFO("storage", "writes to %s succeed again", config_.dir.c_str());
  storage_failing_ = false;
}

void Proxy::upstream_lost() {
  std::string problems;
  uint64_t dropped = store_.rollback(problems);
  if (dropped) {
    LOG_INFO(kComponent, "took back %llu bytes the upstream link appended and never committed "
             "(a command the master did not finish sending, or bytes after a failed write)",
             static_cast<unsigned long long>(dropped));
  }
  if (!problems.empty()) {
    LOG_WARN(kComponent, "tidying the log files after that: %s (harmless: those bytes are past the log's end)",
             problems.c_str());
  }
}

void Proxy::sample_history() {
  std::vector<History::ReplicaLag> lags;
  for (const auto& s : sessions_) {
    if (s->closing() || !s->past_handshake()) continue;
    if (lags.size() == History::kMaxReplicas) break;
    lags.push_back({s->ip() + ":" + std::to_string(s->listening_port()), lag_bytes(*s), s->seconds_since_ack()});
  }
  const auto unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  history_.add(static_cast<int64_t>(unix_ms), feed_->link().total_bytes(), std::move(lags));
}

bool Proxy::is_standby() const { return standby_ && !standby_->active(); }

std::string Proxy::replication_refused() const {
  if (superseded_by_.empty()) return "";
  return "psync-proxy: this lineage was taken over by a standby (now replid " + superseded_by_ +
         "); replicate from the new active";
}

void Proxy::check_takeover_markers(std::string_view bytes) {
  if (!superseded_by_.empty() || store_.replid().empty()) return;
  int64_t db = 0;
  std::vector<protocol::StreamCommand> cmds;
  std::string error;
  protocol::split_commands(bytes, 1, db, cmds, error);  // whole commands only (a piece's tail: ignored)
  for (const auto& c : cmds) {
    auto nonce = protocol::marker_nonce(c.bytes, Refresher::kChannel);
    if (!nonce || !nonce->starts_with(kTakeoverMarker)) continue;
    // takeover:<old replid>:<new replid>
    std::string_view rest = nonce->substr(kTakeoverMarker.size());
    if (rest.size() != 81 || rest[40] != ':') continue;
    if (rest.substr(0, 40) == store_.replid()) {
      superseded(std::string(rest.substr(0, 40)), std::string(rest.substr(41)));
      return;
    }
  }
}

void Proxy::maybe_follow_again() {
  // Once the superseded feed's link has ended (it cannot be replaced from
  // inside its own callback, where the marker was read).
  if (superseded_by_.empty() || !standby_ || feed_->link().state() != Link::State::kStopped) return;
  LOG_WARN(kComponent, "following %s again, as its standby (--standby-of)", config_.standby_of.str().c_str());
  retired_feeds_.push_back(std::move(feed_));
  feed_ = std::make_unique<LiveFeed>(*this, LiveFeed::Source::kActive);
  standby_->follow_again();
  superseded_by_.clear();
  own_pings_held_ = false;  // (a standby writes none anyway: is_standby())
  feed_->start();
  notify("STATUS=standby of " + config_.standby_of.str());
}

void Proxy::superseded(const std::string& old_replid, const std::string& new_replid) {
  superseded_by_ = new_replid;
  if (standby_) {
    LOG_ERROR(kComponent,
              "a standby took lineage %s over (it goes on as %s): this proxy stops serving replicas and "
              "follows %s again as its standby",
              old_replid.c_str(), new_replid.c_str(), config_.standby_of.str().c_str());
  } else {
    LOG_ERROR(kComponent,
              "a standby took lineage %s over (it goes on as %s): this proxy stops serving replicas and stops "
              "following the master; restart it as a standby of the new active (--standby-of)",
              old_replid.c_str(), new_replid.c_str());
  }
  own_pings_held_ = true;
  refresher_->abort("the lineage was taken over by a standby");
  for (auto& s : sessions_) {
    if (s->past_handshake()) s->close("this proxy's lineage was taken over by a standby (now " + new_replid + ")");
  }
  // The live feed ends its link (from inside its callback: LiveFeed::on_stream).
  notify("STATUS=superseded by a standby (replid " + new_replid + ")");
}

void Proxy::restart_log_at(uint64_t next) {
  refresher_->abort("the log starts over");
  if (standby_) standby_->on_new_lineage();
  store_.reset(next);
}

void Proxy::become_active(const std::string& why, Refresher::Splice* splice) {
  LOG_WARN(kComponent, "taking over from the active: %s", why.c_str());
  upstream_lost();  // what the active's link left uncommitted goes
  store_.forget_upstream();
  if (store_.snapshot()) {
    const std::string old = store_.replid();
    const uint64_t end = store_.committed_end();
    try {
      store_.switch_replid(random_replid());
      LOG_WARN(kComponent,
               "lineage %s goes on as %s: replicas at or before offset %llu continue (replid2), later ones "
               "full-resync",
               old.c_str(), store_.replid().c_str(), static_cast<unsigned long long>(end + 1));
    } catch (const std::exception& e) {
      // Nothing may be appended under the active's replid: no PINGs until
      // the new lineage.
      storage_failed(std::string("cannot record the new replid: ") + e.what());
      own_pings_held_ = true;
    }
  }
  // Replicas go and come back at once: a Redis replica learns the new
  // replid only from +CONTINUE <replid> (as when a Redis master's replid
  // changes); one that streamed on past the switch point would full-resync
  // at its next reconnect, its replid being the old one.
  for (auto& s : sessions_) {
    if (s->past_handshake()) s->close("the lineage goes on under a new replid: reconnect for +CONTINUE");
  }
  // The feed of the active goes; the master is followed from here on.
  feed_->stop();
  retired_feeds_.push_back(std::move(feed_));
  if (splice && own_pings_held_) {
    // The new replid could not be recorded: no splice under the old one.
    splice = nullptr;
  }
  if (splice) {
    // Exactly the master commands the active did not deliver, then the own
    // link's stream as the live one (proxy/standby.h).
    protocol::StreamTracker& t = *splice->tracker;
    const uint64_t first = store_.committed_end() + 1;
    std::string append_error;
    const bool read_back = t.splice([&](std::string_view piece) {
      if (!append_error.empty()) return;
      try {
        store_.append(piece);
      } catch (const std::exception& e) {
        append_error = e.what();
      }
    });
    try {
      if (!read_back) throw std::runtime_error(t.error());
      if (!append_error.empty()) throw std::runtime_error(append_error);
      store_.commit(0);
      if (!t.own_partial().empty()) store_.append(t.own_partial());
      LOG_WARN(kComponent,
               "active now, from offset %llu on: appended %llu commands (%llu bytes) the active had not delivered, "
               "after %llu matched; the own master link goes on as the upstream",
               static_cast<unsigned long long>(first), static_cast<unsigned long long>(t.ahead()),
               static_cast<unsigned long long>(store_.committed_end() + 1 - first),
               static_cast<unsigned long long>(t.matched()));
      feed_ = std::make_unique<LiveFeed>(*this, std::move(splice->link));
      commands_at_snapshot_ = feed_->link().total_commands();
      notify("STATUS=active (took over from " + config_.standby_of.str() + ")");
      return;
    } catch (const std::exception& e) {
      storage_failed(std::string("cannot append the takeover's commands: ") + e.what());
      std::string problems;
      store_.rollback(problems);
      splice->link->stop();
      // A new lineage then, as without a splice: the log's end is the
      // active's last byte, under the new replid.
    }
  }
  // With no aligned master link of its own the next master command is
  // unknown: a new SYNC, a new lineage (proxy/standby.h).
  feed_ = std::make_unique<LiveFeed>(*this, LiveFeed::Source::kMaster);
  LOG_WARN(kComponent, "active now: syncing with the master at %s for a new lineage (replicas full-resync once)",
           config_.upstream.str().c_str());
  feed_->start();
  notify("STATUS=active (took over from " + config_.standby_of.str() + ")");
}

void Proxy::begin_lineage(std::shared_ptr<backlog::Snapshot> snapshot) {
  const bool had_lineage = store_.snapshot() != nullptr;
  refresher_->abort("a new lineage starts");
  if (standby_) standby_->on_new_lineage();
  std::string problems;
  store_.begin_lineage(std::move(snapshot), problems);
  commands_at_snapshot_ = feed_->link().total_commands();
  const auto& snap = store_.snapshot();
  LOG_INFO(kComponent, "new lineage %s: snapshot of %s at offset %llu%s", snap->replid().c_str(),
           human_bytes(static_cast<double>(snap->size())).c_str(),
           static_cast<unsigned long long>(snap->offset()),
           had_lineage ? "; replicas of the previous lineage are moved to it (full resync)" : "");
  if (!problems.empty()) LOG_WARN(kComponent, "cannot remove old log segments: %s", problems.c_str());
  std::vector<ReplicaSession*> all;
  for (auto& s : sessions_) all.push_back(s.get());
  for (auto* s : all) {
    switch (s->state()) {
      case ReplicaSession::State::kSendBulk:
      case ReplicaSession::State::kOnline:
        s->close("the proxy re-synced with its master (new lineage " + snap->replid() +
                 "); the replica will full-resync");
        break;
      case ReplicaSession::State::kWaitSnapshot:
        s->on_snapshot_ready();
        break;
      case ReplicaSession::State::kHandshake:
        break;
    }
  }
}

void Proxy::install_refreshed_snapshot(std::shared_ptr<backlog::Snapshot> snapshot, uint64_t commands_after) {
  const uint64_t before = store_.snapshot()->offset();
  store_.install_snapshot(std::move(snapshot));
  const uint64_t now = feed_->link().total_commands();
  commands_at_snapshot_ = now > commands_after ? now - commands_after : 0;
  const auto& snap = store_.snapshot();
  LOG_INFO(kComponent, "snapshot of %s at offset %llu (was %llu): full resyncs are served from it, "
           "as +FULLRESYNC %s %llu, the RDB, SELECT, then the log from %llu",
           human_bytes(static_cast<double>(snap->size())).c_str(), static_cast<unsigned long long>(snap->offset()),
           static_cast<unsigned long long>(before), snap->replid().c_str(),
           static_cast<unsigned long long>(snap->fullresync_offset()),
           static_cast<unsigned long long>(snap->offset() + 1));
  trim_log();
}

uint64_t Proxy::commands_since_snapshot() const {
  const uint64_t now = feed_->link().total_commands();
  return now > commands_at_snapshot_ ? now - commands_at_snapshot_ : 0;
}

void Proxy::trim_log() {
  // A full resync in progress reads the log from its snapshot's offset + 1,
  // whichever snapshot it is being sent: those bytes stay until it is online.
  uint64_t hold_from = UINT64_MAX;
  for (const auto& s : sessions_) {
    if (s->state() == ReplicaSession::State::kSendBulk && !s->closing()) hold_from = std::min(hold_from, s->cursor());
  }
  std::string problems;
  uint64_t freed = store_.trim(config_.backlog_size, hold_from, problems);
  if (freed) {
    LOG_INFO(kComponent, "removed %s of old log segments: the log now starts at offset %llu",
             human_bytes(static_cast<double>(freed)).c_str(),
             static_cast<unsigned long long>(store_.log().first_offset()));
  }
  if (!problems.empty()) LOG_WARN(kComponent, "cannot remove old log segments: %s", problems.c_str());
}

uint64_t Proxy::lag_bytes(const ReplicaSession& s) const {
  if (s.state() != ReplicaSession::State::kOnline) return 0;
  auto acked = static_cast<uint64_t>(std::max<int64_t>(s.acked_offset(), 0));
  return visible_end() > acked ? visible_end() - acked : 0;
}

void Proxy::notify_sessions() {
  for (auto& s : sessions_) s->on_log_grew();
}

void Proxy::append_own_ping() {
  // Only between whole commands, only in a lineage, never while a new
  // lineage's offset is being fixed, never into a standby's mirror of the
  // active (proxy/standby.h).
  if (!store_.snapshot() || own_pings_held_ || store_.has_uncommitted() || is_standby()) return;
  try {
    store_.append(kOwnPing);
    store_.commit_own();
    if (storage_failing_) storage_ok();
  } catch (const std::exception& e) {
    // Nothing of a failed append is in the log (ReplicationLog::append).
    storage_failed(std::string("cannot append to the replication log: ") + e.what());
  }
}

void Proxy::on_ping_timer(uv_timer_t* t) { static_cast<Proxy*>(t->data)->append_own_ping(); }

void Proxy::on_keepalive_timer(uv_timer_t* t) {
  auto* self = static_cast<Proxy*>(t->data);
  auto timeout_ms = static_cast<uint64_t>(self->config_.handshake_timeout_s * 1000);
  uint64_t now = now_ms();
  // No copy of the list needed: closing defers deletion (see session_closed).
  for (auto& s : self->sessions_) {
    if (s->closing()) continue;
    // A client blocked in WAIT waits as long as it asked (admin_commands.h).
    if (!s->past_handshake() && !s->blocked() && now - s->created_ms() > timeout_ms) {
      LOG_WARN("replica", "client %s did not start replicating within %.0f s: closing",
               s->address().c_str(), self->config_.handshake_timeout_s);
      self->counters_.closed_handshake_timeouts++;
      s->close("handshake timeout");
      continue;
    }
    s->on_second(now);
  }
  if (self->standby_) self->standby_->on_second();
  if (self->superseded_by_.empty()) self->refresher_->on_second();
  self->maybe_follow_again();
  self->live_restart_->on_second();
  self->sample_history();
  self->trim_log();
  self->store_.flush();
  if (!self->store_.persist_error().empty()) self->storage_failed(self->store_.persist_error());
}

// ---------------------------------------------------------------- live restart

std::string Proxy::handover_blocker() const {
  if (standby_) {
    // Its state (following, aligned, took over) is not handed over.
    return "a proxy started with --standby-of does not restart in place yet: restart it (a standby resumes "
           "from the active with PSYNC)";
  }
  switch (feed_->link().state()) {
    case Link::State::kWaitingPayload:
    case Link::State::kTransfer:
    case Link::State::kStored:
      return "the upstream link is receiving the master's snapshot (an exec now would cost the master another "
             "BGSAVE)";
    default:
      break;
  }
  if (refresher_->active()) {
    return std::string("a snapshot refresh is in progress (") + Refresher::state_name(refresher_->state()) + ")";
  }
  return "";
}

Handover Proxy::make_handover(const std::string& tail) {
  // The next image reopens the store at its commit point: what the paused
  // link appended past it (part of a command) is taken back, and comes again
  // from the tail.
  std::string problems;
  store_.rollback(problems);
  if (!problems.empty()) LOG_WARN(kComponent, "tidying the log before the exec: %s", problems.c_str());
  Handover h;
  h.pid = getpid();
  h.written_unix = time(nullptr);
  h.from_build = build_id();
  h.dir = config_.dir;
  h.bind = config_.bind;
  h.port = config_.port;
  h.status_bind = config_.status_bind;
  h.status_port = config_.status_port;
  h.replica_listener_fd = listener_ ? listener_->fd() : -1;
  h.status_listener_fd = status_->listener_fd();
  h.start_ms = start_ms_;
  h.started_unix = started_unix_;
  h.live_restarts = live_restarts_ + 1;
  h.live_restart_fallbacks = live_restart_fallbacks_;
  h.run_id = process_run_id();
  h.counters = counters_;
  h.refresh = refresher_->stats();
  h.commands_since_snapshot = commands_since_snapshot();
  h.next_session_id = next_session_id_;
  const Link& link = feed_->link();
  const Link::Adopted stats = link.adopted_stats();
  h.upstream.fd = link.state() == Link::State::kStreaming ? link.fd() : -1;
  h.upstream.address = config_.upstream.str();
  h.upstream.mode = Link::mode_name(stats.mode);
  if (h.upstream.mode.empty()) h.upstream.mode = "sync";
  h.upstream.tail = tail;
  h.upstream.master_version = stats.master_version;
  h.upstream.sync_count = stats.sync_count;
  h.upstream.partial_resyncs = stats.partial_resyncs;
  h.upstream.total_bytes = stats.total_bytes;
  h.upstream.total_commands = stats.total_commands;
  for (const auto& s : sessions_) {
    if (s->can_hand_over()) {
      h.sessions.push_back(s->handover());
    } else if (!s->closing()) {
      LOG_INFO("replica", "client %s is not handed over to the new image (it is closing, or has more than %zu "
               "bytes of replies and requests waiting): the exec closes its connection",
               s->address().c_str(), ReplicaSession::kMaxHandedOverBytes);
    }
  }
  return h;
}

void Proxy::resume_after_failed_handover(const std::string& tail) {
  Link& link = feed_->link();
  if (link.state() == Link::State::kStreaming) link.resume_at_boundary(store_.upstream().offset, tail);
}

// ---------------------------------------------------------------- INFO / ROLE

std::string Proxy::start_refresh(const std::string& trigger) {
  if (!superseded_by_.empty()) return "this proxy's lineage was taken over by a standby";
  // A standby refreshes its own snapshot as the active does: the markers go
  // through the master into the active's stream, which it mirrors, and the
  // snapshot is placed at an offset of that log (nothing is written to it).
  return refresher_->start(trigger);
}

std::string Proxy::info(std::string_view section) const { return render_info(status_view(), section); }

std::string Proxy::role_reply() const { return render_role(status_view()); }

}  // namespace psync::proxy
