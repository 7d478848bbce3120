// INFO and ROLE, as a Redis 7 master answers them, rendered from a StatusView
// (pure: the same state /status and /metrics show).
#include <sys/utsname.h>

#include <algorithm>
#include <ctime>
#include <string>
#include <vector>

#include "protocol/numbers.h"
#include "protocol/reply.h"
#include "proxy/status_view.h"

namespace psync::proxy {

namespace {
const std::string kNoReplid(40, '0');
}  // namespace

std::string render_info(const StatusView& v, std::string_view section) {
  bool all = section.empty() || protocol::iequals(section, "default") ||
             protocol::iequals(section, "all") || protocol::iequals(section, "everything");
  std::string out;
  auto add = [&out](const std::string& line) { out += line + "\r\n"; };
  if (all || protocol::iequals(section, "server")) {
    utsname u{};
    uname(&u);
    auto up = static_cast<uint64_t>(v.proxy.uptime_seconds);
    add("# Server");
    add("redis_version:7.0.0");
    add("psync_proxy_version:" + v.proxy.build);
    add("psync_proxy_role:" + v.proxy.role);
    add("psync_proxy_offset:" + std::to_string(v.proxy.offset));
    add("redis_mode:standalone");
    add(std::string("os:") + u.sysname + " " + u.release + " " + u.machine);
    add("arch_bits:64");
    add("multiplexing_api:epoll");
    add("process_id:" + std::to_string(v.proxy.pid));
    add("run_id:" + v.proxy.run_id);
    add("tcp_port:" + std::to_string(v.proxy.port));
    add("uptime_in_seconds:" + std::to_string(up));
    add("uptime_in_days:" + std::to_string(up / 86400));
    add("executable:psync-proxy");
    add("config_file:");
    out += "\r\n";
  }
  if (all || protocol::iequals(section, "clients")) {
    // Connections that are not replicas (tools, clients in WAIT), as Redis counts them.
    size_t clients = 0;
    for (const auto& r : v.replicas) clients += r.past_handshake ? 0 : 1;
    add("# Clients");
    add("connected_clients:" + std::to_string(clients));
    add("maxclients:" + std::to_string(v.proxy.max_clients));
    add("blocked_clients:" + std::to_string(v.proxy.blocked_clients));
    out += "\r\n";
  }
  if (all || protocol::iequals(section, "replication")) {
    add("# Replication");
    add("role:master");
    int n = 0;
    std::string slaves;
    for (const auto& r : v.replicas) {
      if (!r.past_handshake) continue;
      double lag = r.lag_seconds;
      slaves += "slave" + std::to_string(n++) + ":ip=" + r.ip + ",port=" + std::to_string(r.listening_port) +
                ",state=" + r.state + ",offset=" + std::to_string(r.acked_offset) +
                ",lag=" + std::to_string(lag < 0 ? 0 : static_cast<int64_t>(lag)) + "\r\n";
    }
    add("connected_slaves:" + std::to_string(n));
    out += slaves;
    add("master_failover_state:no-failover");
    add("master_replid:" + (v.proxy.replid.empty() ? kNoReplid : v.proxy.replid));
    add("master_replid2:" + (v.proxy.replid2.empty() ? kNoReplid : v.proxy.replid2));
    add("master_repl_offset:" + std::to_string(v.proxy.offset));
    add("second_repl_offset:" + std::to_string(v.proxy.second_offset));
    add(std::string("repl_backlog_active:") + (v.snapshot ? "1" : "0"));
    uint64_t floor = v.proxy.psync_floor;
    uint64_t histlen = v.proxy.offset + 1 - std::min(floor, v.proxy.offset + 1);
    // The backlog is the part of the log a PSYNC of this lineage can be
    // served from: from its first retained byte (or the lineage's first
    // byte) to the committed end. The size reported is what is kept
    // (--backlog-size only bounds what stays before the snapshot's offset,
    // and the log after it is unbounded): never more than a PSYNC can use.
    add("repl_backlog_size:" + std::to_string(histlen));
    add("repl_backlog_first_byte_offset:" + std::to_string(floor));
    add("repl_backlog_histlen:" + std::to_string(histlen));
    out += "\r\n";
  }
  if (all || protocol::iequals(section, "persistence")) {
    // The proxy's snapshot as Redis reports its RDB: a BGSAVE on the proxy is
    // a snapshot refresh (proxy/refresher.h).
    const StatusView::RefreshPart& r = v.refresh;
    const bool active = r.state != "idle";
    add("# Persistence");
    add("loading:0");
    add("rdb_changes_since_last_save:" + std::to_string(v.proxy.commands_since_snapshot));
    add(std::string("rdb_bgsave_in_progress:") + (active ? "1" : "0"));
    add("rdb_last_save_time:" + std::to_string(v.snapshot ? v.snapshot->created_unix : 0));
    add(std::string("rdb_last_bgsave_status:") + (!r.last_error.empty() ? "err" : "ok"));
    add("rdb_last_bgsave_time_sec:" +
        std::to_string(r.last_attempt_unix && !active ? static_cast<int64_t>(r.last_duration_seconds) : -1));
    add("rdb_current_bgsave_time_sec:" +
        std::to_string(active ? static_cast<int64_t>(time(nullptr) - r.last_attempt_unix) : -1));
    add("rdb_saves:" + std::to_string(r.done));
    add("aof_enabled:0");
    out += "\r\n";
  }
  if (all || protocol::iequals(section, "stats")) {
    add("# Stats");
    add("total_connections_received:" + std::to_string(v.counters.connections_received));
    add("total_commands_processed:" + std::to_string(v.counters.commands_processed));
    add("total_net_input_bytes:" + std::to_string(v.counters.net_input_bytes));
    add("total_net_output_bytes:" + std::to_string(v.counters.net_output_bytes));
    add("rejected_connections:" + std::to_string(v.counters.rejected_connections));
    add("sync_full:" + std::to_string(v.counters.sync_full));
    add("sync_partial_ok:" + std::to_string(v.counters.sync_partial_ok));
    add("sync_partial_err:" + std::to_string(v.counters.sync_partial_err));
    out += "\r\n";
  }
  if (out.size() >= 2) out.resize(out.size() - 2);  // no blank line after the last section
  return out;
}

std::string render_role(const StatusView& v) {
  std::string out = protocol::array_header(3);
  out += protocol::bulk_string("master");
  out += protocol::integer_reply(static_cast<int64_t>(v.proxy.offset));
  std::vector<const StatusView::ReplicaPart*> online;
  for (const auto& r : v.replicas) {
    if (r.state == "online") online.push_back(&r);
  }
  out += protocol::array_header(online.size());
  for (const auto* r : online) {
    out += protocol::array_header(3);
    out += protocol::bulk_string(r->ip);
    out += protocol::bulk_string(std::to_string(r->listening_port));
    out += protocol::bulk_string(std::to_string(r->acked_offset));
  }
  return out;
}


}  // namespace psync::proxy
