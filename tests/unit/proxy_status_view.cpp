#include <doctest/doctest.h>
#include <uv.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "protocol/text.h"
#include "proxy/proxy.h"
#include "proxy/status_view.h"

using namespace psync::proxy;
using nlohmann::json;

namespace {

// A view as a busy proxy has it: a snapshot, replicas in every state.
StatusView busy_view() {
  StatusView v;
  v.proxy.version = "0.1.0";
  v.proxy.replid = "5f1c0e6a3b2d4c8e9f00112233445566778899aa";
  v.proxy.offset = 900;
  v.proxy.uptime_seconds = 12.5;
  v.proxy.pid = 4242;
  v.upstream.address = "10.0.0.5:6379";
  v.upstream.state = "streaming";
  v.upstream.link_up = true;
  v.upstream.sync_count = 1;
  v.upstream.rdb_bytes_received = 100;
  v.upstream.rdb_bytes_expected = 100;
  v.upstream.seconds_since_last_byte = 0.25;
  v.upstream.mode = "psync";
  v.upstream.version = "4.0.14";
  v.upstream.replid = "1111111111111111111111111111111111111111";
  v.upstream.offset = 5000;
  v.log.first_offset = 1;
  v.log.last_offset = 900;
  v.log.bytes_on_disk = 900;
  v.log.segments = 1;
  v.log.backlog_size_configured = 256ull << 20;
  v.storage.dir = "/var/lib/psync-proxy";
  v.snapshot = StatusView::SnapshotPart{0, 0, 100, v.proxy.replid, 1700000000, 3};
  StatusView::ReplicaPart online;
  online.address = "127.0.0.1:50000";
  online.ip = "127.0.0.1";
  online.listening_port = 6381;
  online.state = "online";
  online.past_handshake = true;
  online.sync = "full";
  online.acked_offset = 800;
  online.sent_offset = 900;
  online.lag_bytes = 100;
  online.lag_seconds = 0.5;
  StatusView::ReplicaPart bulk = online;
  bulk.listening_port = 6382;
  bulk.state = "send_bulk";
  bulk.lag_bytes = 0;
  bulk.lag_seconds = -1;
  bulk.bulk_bytes_sent = 40;
  StatusView::ReplicaPart handshake;
  handshake.address = "127.0.0.1:50002";
  handshake.ip = "127.0.0.1";
  handshake.state = "handshake";
  handshake.sync = "none";
  v.replicas = {online, bulk, handshake};
  v.counters.sync_full = 2;
  return v;
}

std::set<std::string> keys(const json& j) {
  std::set<std::string> out;
  for (const auto& [k, _] : j.items()) out.insert(k);
  return out;
}

}  // namespace

TEST_CASE("status view: the /status fields, with null where a value is unknown") {
  json j = json::parse(render_status_json(busy_view()));
  CHECK(keys(j) == std::set<std::string>{"proxy", "upstream", "log", "storage", "snapshot", "replicas", "counters", "refresh", "standby", "tls"});
  CHECK(keys(j["proxy"]) == std::set<std::string>{"version", "replid", "offset", "uptime_seconds", "pid", "build",
                                                  "started_unix", "live_restarts", "live_restart", "role", "replid2", "second_offset"});
  CHECK(keys(j["proxy"]["live_restart"]) == std::set<std::string>{"state", "last_error", "last_attempt_unix", "fallbacks"});
  CHECK(j["proxy"]["live_restart"]["last_attempt_unix"].is_null());  // never asked for
  CHECK(keys(j["upstream"]) ==
        std::set<std::string>{"address", "state", "link_up", "last_error", "sync_count", "rdb_bytes_received",
                              "rdb_bytes_expected", "stream_bytes", "commands", "seconds_since_last_byte", "mode",
                              "version", "replid", "offset"});
  CHECK(keys(j["log"]) == std::set<std::string>{"first_offset", "last_offset", "bytes_on_disk", "segments", "open_files",
                                                "backlog_size_configured", "retention"});
  CHECK(keys(j["storage"]) == std::set<std::string>{"dir", "ok", "last_error", "last_error_unix"});
  CHECK(keys(j["refresh"]) == std::set<std::string>{"enabled", "state", "link_state", "done", "failed", "last_error",
                                                    "last_trigger", "last_attempt_unix", "last_done_unix",
                                                    "last_duration_seconds", "markers_sent", "alignment"});
  CHECK(keys(j["snapshot"]) == std::set<std::string>{"offset", "fullresync_offset", "bytes", "replid", "created_unix", "age_seconds"});
  CHECK(keys(j["counters"]) == std::set<std::string>{"sync_full", "sync_partial_ok", "sync_partial_err",
                                                     "upstream_partial_resyncs", "connections_received",
                                                     "rejected_connections", "rejected_out_of_fds", "closed_replica_timeouts"});
  REQUIRE(j["replicas"].size() == 3);
  CHECK(j["replicas"][0]["lag_seconds"] == 0.5);
  CHECK_FALSE(j["replicas"][0].contains("bulk_bytes_sent"));
  CHECK(j["replicas"][1]["bulk_bytes_sent"] == 40);
  CHECK(j["replicas"][1]["lag_seconds"].is_null());
  CHECK(j["upstream"]["offset"] == 5000);
  CHECK(j["storage"]["last_error_unix"].is_null());

  StatusView idle;
  j = json::parse(render_status_json(idle));
  CHECK(j["snapshot"].is_null());
  CHECK(j["upstream"]["offset"].is_null());
  CHECK(j["upstream"]["rdb_bytes_expected"].is_null());
  CHECK(j["upstream"]["seconds_since_last_byte"].is_null());
  CHECK(j["replicas"].is_array());
  CHECK(j["replicas"].empty());
}

TEST_CASE("status view: log.retention says what is kept: --backlog-size before the snapshot, or everything when refresh is off") {
  StatusView v = busy_view();
  v.log.backlog_size_configured = 64ull << 20;
  json j = json::parse(render_status_json(v));
  CHECK(j["log"]["backlog_size_configured"] == 64ull << 20);
  std::string retention = j["log"]["retention"];
  CHECK(retention.find("--backlog-size (64.0 MB) before the snapshot") != std::string::npos);
  v.log.refresh_enabled = false;
  j = json::parse(render_status_json(v));
  retention = j["log"]["retention"];
  CHECK(retention.find("until the next upstream SYNC (--snapshot-refresh no): the disk grows") != std::string::npos);
}

TEST_CASE("status view: strings that are not UTF-8 in every field: valid JSON, never an exception") {
  static const char kHostile[] = "caf\xe9 \xff\xfe\xc3(\x00\r\n\"\\ end";
  const std::string hostile(kHostile, sizeof kHostile - 1);
  StatusView v = busy_view();
  for (std::string* s : {&v.proxy.version, &v.proxy.replid, &v.upstream.address, &v.upstream.state,
                         &v.upstream.last_error, &v.upstream.mode, &v.upstream.version, &v.upstream.replid,
                         &v.storage.dir, &v.storage.last_error, &v.snapshot->replid}) {
    *s = hostile;
  }
  for (auto& r : v.replicas) r.address = r.ip = r.state = r.sync = hostile;
  std::string text;
  REQUIRE_NOTHROW(text = render_status_json(v));
  json j;
  REQUIRE_NOTHROW(j = json::parse(text));  // the parser refuses strings that are not UTF-8
  // Raw bytes that are not UTF-8 come out as U+FFFD; the rest is kept.
  const std::string shown = j["upstream"]["last_error"];
  static const char kShown[] = "caf\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd(\x00\r\n\"\\ end";
  CHECK(shown == std::string(kShown, sizeof kShown - 1));
  // As the proxy keeps them (protocol/text.h): ASCII, shown exactly.
  v.upstream.last_error = psync::protocol::peer_text("the master refused SYNC: ERR caf\xe9 closed");
  j = json::parse(render_status_json(v));
  CHECK(j["upstream"]["last_error"] == "the master refused SYNC: ERR caf\\xe9 closed");
}

TEST_CASE("metrics from the view: replicas in a handshake are left out, lag only for online ones, labels escaped") {
  StatusView v = busy_view();
  v.replicas[0].ip = "a\"b\\c\nd";
  const std::string text = render_metrics_text(v);
  CHECK(text.find("psync_proxy_replica_lag_bytes{replica=\"a\\\"b\\\\c\\nd:6381\"} 100\n") != std::string::npos);
  CHECK(text.find("psync_proxy_replica_state{replica=\"127.0.0.1:6382\",state=\"send_bulk\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("psync_proxy_replica_lag_bytes{replica=\"127.0.0.1:6382\"}") == std::string::npos);
  CHECK(text.find(":0\"") == std::string::npos);  // the handshake client (listening port 0)
  CHECK(text.find("psync_proxy_upstream_state{state=\"streaming\"} 1\n") != std::string::npos);
  CHECK(text.find("psync_proxy_upstream_state{state=\"backoff\"} 0\n") != std::string::npos);
  CHECK(text.find("psync_proxy_snapshot_age_seconds 3\n") != std::string::npos);
  // One sample or comment a line: the newline in the label did not break one in two.
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    CAPTURE(line);
    CHECK((line.rfind("# ", 0) == 0 || line.rfind("psync_proxy_", 0) == 0));
  }
}

namespace {
struct IdleProxy {
  uv_loop_t loop{};
  std::unique_ptr<Proxy> proxy;
  explicit IdleProxy(uint64_t backlog_size) {
    uv_loop_init(&loop);
    Config c;
    c.upstream.host = "127.0.0.1";
    c.upstream.port = 1;
    c.has_upstream = true;
    c.backlog_size = backlog_size;
    proxy = std::make_unique<Proxy>(&loop, c);
  }
  ~IdleProxy() {
    proxy.reset();
    uv_walk(&loop, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};
}  // namespace

TEST_CASE("INFO repl_backlog_size is the bytes kept, not the --backlog-size that is not enforced yet") {
  IdleProxy p(64ull << 20);
  const std::string info = p.proxy->info("replication");
  CHECK(info.find("repl_backlog_size:0\r\n") != std::string::npos);
  CHECK(info.find("repl_backlog_histlen:0") != std::string::npos);
  CHECK(info.find(std::to_string(64ull << 20)) == std::string::npos);
  // /status says what is configured.
  json j = json::parse(p.proxy->status_json());
  CHECK(j["log"]["backlog_size_configured"] == 64ull << 20);
}

TEST_CASE("status view: INFO and ROLE render from the view as a Redis 7 master answers them") {
  StatusView v = busy_view();
  v.proxy.run_id = std::string(40, 'e');
  v.proxy.port = 6380;
  v.proxy.psync_floor = 101;
  v.proxy.commands_since_snapshot = 77;
  v.refresh.state = "aligning";
  v.refresh.last_attempt_unix = time(nullptr) - 3;
  const std::string info = render_info(v, "");
  for (const char* section : {"# Server\r\n", "# Replication\r\n", "# Persistence\r\n", "# Stats\r\n"}) {
    CHECK(info.find(section) != std::string::npos);
  }
  CHECK(info.find("run_id:" + std::string(40, 'e') + "\r\n") != std::string::npos);
  CHECK(info.find("tcp_port:6380\r\n") != std::string::npos);
  CHECK(info.find("master_repl_offset:900\r\n") != std::string::npos);
  CHECK(info.find("repl_backlog_first_byte_offset:101\r\n") != std::string::npos);
  CHECK(info.find("repl_backlog_histlen:800\r\n") != std::string::npos);
  CHECK(info.find("rdb_changes_since_last_save:77\r\n") != std::string::npos);
  CHECK(info.find("rdb_bgsave_in_progress:1\r\n") != std::string::npos);
  // Only the replicas past their handshake are listed, with Redis's state names.
  CHECK(info.find("slave0:ip=127.0.0.1,port=6381,state=online,") != std::string::npos);
  CHECK(render_info(v, "persistence").rfind("# Persistence\r\n", 0) == 0);
  CHECK(render_info(v, "nosuchsection").empty());
  // ROLE: master, the offset, online replicas as [ip, port, acked offset] bulk strings.
  const std::string role = render_role(v);
  CHECK(role.rfind("*3\r\n$6\r\nmaster\r\n:900\r\n", 0) == 0);
  CHECK(role.find("$9\r\n127.0.0.1\r\n$4\r\n6381\r\n") != std::string::npos);
}

TEST_CASE("status view: a standby's part, and its role in /status, INFO and /metrics") {
  StatusView v = busy_view();
  CHECK(json::parse(render_status_json(v))["standby"].is_null());
  v.proxy.role = "standby";
  StatusView::StandbyPart sb;
  sb.active = "10.0.0.1:6380";
  sb.state = "following";
  sb.link_state = "streaming";
  sb.timeout_seconds = 10;
  v.standby = sb;
  json j = json::parse(render_status_json(v));
  CHECK(keys(j["standby"]) == std::set<std::string>{"active", "state", "link_state", "unreachable_seconds",
                                                    "timeout_seconds", "took_over_unix", "takeover_offset",
                                                    "replid_taken_over", "takeover_reason", "spliced", "alignment"});
  CHECK(keys(j["standby"]["alignment"]) == std::set<std::string>{"state", "link_state", "last_error", "attempts_failed",
                                                                 "matched_commands", "ahead_commands", "behind_commands"});
  CHECK(j["proxy"]["role"] == "standby");
  CHECK(j["standby"]["took_over_unix"].is_null());
  CHECK(j["standby"]["takeover_offset"].is_null());
  CHECK(render_info(v, "server").find("psync_proxy_role:standby\r\n") != std::string::npos);
  const std::string m = render_metrics_text(v);
  CHECK(m.find("psync_proxy_role{role=\"standby\"} 1") != std::string::npos);
  CHECK(m.find("psync_proxy_role{role=\"active\"} 0") != std::string::npos);
  // After a takeover: replid2 and second_offset in INFO replication.
  v.proxy.role = "active";
  v.proxy.replid2 = std::string(40, 'e');
  v.proxy.second_offset = 1234;
  const std::string info = render_info(v, "replication");
  CHECK(info.find("master_replid2:" + std::string(40, 'e') + "\r\n") != std::string::npos);
  CHECK(info.find("second_repl_offset:1234\r\n") != std::string::npos);
}
