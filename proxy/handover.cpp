#include "proxy/handover.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace psync::proxy {

using nlohmann::json;

// Counters and Refresher::Stats travel whole: every field, by name. A field
// an older image did not write keeps its default (a new counter starts at 0).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Counters, sync_full, sync_partial_ok, sync_partial_err,
                                                connections_received, commands_processed, net_input_bytes,
                                                net_output_bytes, rejected_connections, rejected_protected_mode,
                                                rejected_max_clients, rejected_out_of_fds, auth_failures,
                                                closed_protocol_errors, closed_handshake_timeouts,
                                                closed_replica_timeouts)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Refresher::Stats, done, failed, last_error, last_trigger,
                                                last_attempt_unix, last_done_unix, last_duration_s, last_offset,
                                                last_db, last_marker, last_matched, markers_sent)

std::string to_hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

bool from_hex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  auto value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = value(hex[i]);
    int lo = value(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

namespace {

json snapshot_json(const SnapshotHandover& s) {
  return {{"fd", s.fd},         {"path", s.path},     {"size", s.size},
          {"offset", s.offset}, {"replid", s.replid}, {"prefix_hex", to_hex(s.prefix)},
          {"created_unix", s.created_unix}};
}

json session_json(const SessionHandover& s) {
  json j = {{"fd", s.fd},
            {"id", s.id},
            {"ip", s.ip},
            {"port", s.port},
            {"age_ms", s.age_ms},
            {"state", s.state},
            {"sync_kind", s.sync_kind},
            {"authenticated", s.authenticated},
            {"capa_psync2", s.capa_psync2},
            {"rdb_only", s.rdb_only},
            {"via_psync", s.via_psync},
            {"listening_port", s.listening_port},
            {"name", s.name},
            {"cursor", s.cursor},
            {"acked_offset", s.acked_offset},
            {"bulk_sent", s.bulk_sent},
            {"out_hex", to_hex(s.out)},
            {"in_hex", to_hex(s.in)}};
  if (s.has_bulk) j["bulk"] = snapshot_json(s.bulk);
  return j;
}

// Reading: every access checks the type, so that a file that is not ours is
// an error message, never an exception escaping or a wrong value.
class Reader {
 public:
  explicit Reader(std::string& error) : error_(error) {}
  bool failed() const { return !error_.empty(); }

  template <typename T>
  void get(const json& obj, const char* key, T& out) {
    if (failed()) return;
    auto it = obj.find(key);
    if (it == obj.end()) {
      fail(std::string("no \"") + key + "\"");
      return;
    }
    try {
      out = it->get<T>();
    } catch (const std::exception&) {
      fail(std::string("\"") + key + "\" has the wrong type");
    }
  }
  void hex(const json& obj, const char* key, std::string& out) {
    std::string text;
    get(obj, key, text);
    if (!failed() && !from_hex(text, out)) fail(std::string("\"") + key + "\" is not hex");
  }
  void fd(const json& obj, const char* key, int& out, bool required) {
    get(obj, key, out);
    if (!failed() && (out < -1 || (required && out < 0))) fail(std::string("\"") + key + "\" is not a descriptor");
  }
  void fail(const std::string& what) {
    if (error_.empty()) error_ = what;
  }

 private:
  std::string& error_;
};

void read_snapshot(Reader& r, const json& j, SnapshotHandover& s) {
  if (!j.is_object()) return r.fail("a snapshot is not an object");
  r.fd(j, "fd", s.fd, true);
  r.get(j, "path", s.path);
  r.get(j, "size", s.size);
  r.get(j, "offset", s.offset);
  r.get(j, "replid", s.replid);
  r.hex(j, "prefix_hex", s.prefix);
  r.get(j, "created_unix", s.created_unix);
}

void read_session(Reader& r, const json& j, SessionHandover& s) {
  if (!j.is_object()) return r.fail("a session is not an object");
  r.fd(j, "fd", s.fd, true);
  r.get(j, "id", s.id);
  r.get(j, "ip", s.ip);
  r.get(j, "port", s.port);
  r.get(j, "age_ms", s.age_ms);
  r.get(j, "state", s.state);
  r.get(j, "sync_kind", s.sync_kind);
  r.get(j, "authenticated", s.authenticated);
  r.get(j, "capa_psync2", s.capa_psync2);
  r.get(j, "rdb_only", s.rdb_only);
  r.get(j, "via_psync", s.via_psync);
  r.get(j, "listening_port", s.listening_port);
  r.get(j, "name", s.name);
  r.get(j, "cursor", s.cursor);
  r.get(j, "acked_offset", s.acked_offset);
  r.get(j, "bulk_sent", s.bulk_sent);
  r.hex(j, "out_hex", s.out);
  r.hex(j, "in_hex", s.in);
  if (r.failed()) return;
  static const std::set<std::string> states = {"handshake", "wait_bgsave", "send_bulk", "online"};
  if (!states.count(s.state)) return r.fail("session " + std::to_string(s.id) + ": unknown state");
  auto bulk = j.find("bulk");
  s.has_bulk = bulk != j.end();
  if (s.has_bulk) read_snapshot(r, *bulk, s.bulk);
  if (s.state == "send_bulk" && !s.has_bulk) r.fail("session " + std::to_string(s.id) + ": send_bulk without a snapshot");
}

}  // namespace

std::string encode_handover(const Handover& h) {
  json sessions = json::array();
  for (const auto& s : h.sessions) sessions.push_back(session_json(s));
  json j = {
      {"format", "psync-proxy live restart"},
      {"version", h.version},
      {"pid", h.pid},
      {"written_unix", h.written_unix},
      {"from_build", h.from_build},
      {"dir", h.dir},
      {"bind", h.bind},
      {"port", h.port},
      {"status_bind", h.status_bind},
      {"status_port", h.status_port},
      {"fallback_exe_fd", h.fallback_exe_fd},
      {"argv", h.argv},
      {"exe_path", h.exe_path},
      {"replica_listener_fd", h.replica_listener_fd},
      {"status_listener_fd", h.status_listener_fd},
      {"start_ms", h.start_ms},
      {"started_unix", h.started_unix},
      {"live_restarts", h.live_restarts},
      {"live_restart_fallbacks", h.live_restart_fallbacks},
      {"live_restart_attempt_unix", h.live_restart_attempt_unix},
      {"run_id", h.run_id},
      {"counters", h.counters},
      {"refresh", h.refresh},
      {"commands_since_snapshot", h.commands_since_snapshot},
      {"next_session_id", h.next_session_id},
      {"upstream",
       {{"fd", h.upstream.fd},
        {"address", h.upstream.address},
        {"mode", h.upstream.mode},
        {"tail_hex", to_hex(h.upstream.tail)},
        {"master_version", h.upstream.master_version},
        {"sync_count", h.upstream.sync_count},
        {"partial_resyncs", h.upstream.partial_resyncs},
        {"total_bytes", h.upstream.total_bytes},
        {"total_commands", h.upstream.total_commands}}},
      {"sessions", sessions},
  };
  // Every string in it is ASCII (hex, numbers, addresses, replids) or came
  // from the proxy's own settings; replace, never throw, whatever they hold.
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

bool decode_handover(std::string_view text, Handover& h, std::string& error) {
  error.clear();
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "not JSON";
    return false;
  }
  Reader r(error);
  std::string format;
  r.get(j, "format", format);
  if (!r.failed() && format != "psync-proxy live restart") r.fail("not a live restart handover");
  r.get(j, "version", h.version);
  if (!r.failed() && h.version != kHandoverVersion) {
    r.fail("handover version " + std::to_string(h.version) + ", this build reads version " +
           std::to_string(kHandoverVersion));
  }
  r.get(j, "pid", h.pid);
  r.get(j, "written_unix", h.written_unix);
  r.get(j, "from_build", h.from_build);
  r.get(j, "dir", h.dir);
  r.get(j, "bind", h.bind);
  r.get(j, "port", h.port);
  r.get(j, "status_bind", h.status_bind);
  r.get(j, "status_port", h.status_port);
  r.fd(j, "fallback_exe_fd", h.fallback_exe_fd, false);
  r.get(j, "argv", h.argv);
  r.get(j, "exe_path", h.exe_path);
  r.fd(j, "replica_listener_fd", h.replica_listener_fd, true);
  r.fd(j, "status_listener_fd", h.status_listener_fd, false);
  r.get(j, "start_ms", h.start_ms);
  r.get(j, "started_unix", h.started_unix);
  r.get(j, "live_restarts", h.live_restarts);
  r.get(j, "live_restart_fallbacks", h.live_restart_fallbacks);
  r.get(j, "live_restart_attempt_unix", h.live_restart_attempt_unix);
  r.get(j, "run_id", h.run_id);
  r.get(j, "counters", h.counters);
  r.get(j, "refresh", h.refresh);
  r.get(j, "commands_since_snapshot", h.commands_since_snapshot);
  r.get(j, "next_session_id", h.next_session_id);
  if (r.failed()) return false;
  if (h.argv.empty()) r.fail("\"argv\" is empty");

  auto up = j.find("upstream");
  if (up == j.end() || !up->is_object()) {
    r.fail("no \"upstream\"");
  } else {
    r.fd(*up, "fd", h.upstream.fd, false);
    r.get(*up, "address", h.upstream.address);
    r.get(*up, "mode", h.upstream.mode);
    r.hex(*up, "tail_hex", h.upstream.tail);
    r.get(*up, "master_version", h.upstream.master_version);
    r.get(*up, "sync_count", h.upstream.sync_count);
    r.get(*up, "partial_resyncs", h.upstream.partial_resyncs);
    r.get(*up, "total_bytes", h.upstream.total_bytes);
    r.get(*up, "total_commands", h.upstream.total_commands);
    if (!r.failed() && h.upstream.fd >= 0 && h.upstream.mode != "sync" && h.upstream.mode != "psync") {
      r.fail("upstream mode \"" + h.upstream.mode + "\" is neither sync nor psync");
    }
  }
  auto sessions = j.find("sessions");
  if (sessions == j.end() || !sessions->is_array()) {
    r.fail("no \"sessions\"");
  } else {
    for (const auto& s : *sessions) {
      if (r.failed()) break;
      read_session(r, s, h.sessions.emplace_back());
    }
  }
  if (r.failed()) return false;
  // One descriptor, one owner: a number named twice would be closed twice.
  std::vector<int> fds;
  for (const auto& s : h.sessions) fds.push_back(s.fd);
  fds.push_back(h.replica_listener_fd);
  for (int fd : {h.status_listener_fd, h.upstream.fd, h.fallback_exe_fd}) {
    if (fd >= 0) fds.push_back(fd);
  }
  std::sort(fds.begin(), fds.end());
  if (std::adjacent_find(fds.begin(), fds.end()) != fds.end()) {
    error = "a descriptor is named twice";
    return false;
  }
  return true;
}

std::vector<int> handover_fds(const Handover& h) {
  std::set<int> fds;
  for (const auto& s : h.sessions) {
    fds.insert(s.fd);
    if (s.has_bulk && s.bulk.fd >= 0) fds.insert(s.bulk.fd);
  }
  for (int fd : {h.replica_listener_fd, h.status_listener_fd, h.upstream.fd, h.fallback_exe_fd}) {
    if (fd >= 0) fds.insert(fd);
  }
  return {fds.begin(), fds.end()};
}

}  // namespace psync::proxy
