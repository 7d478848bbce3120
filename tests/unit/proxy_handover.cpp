// The live restart handover (proxy/handover.h): what one image writes, the next reads back
// exactly, and anything else is a clear error, never a wrong descriptor.
#include <doctest/doctest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "proxy/handover.h"

using namespace psync::proxy;

namespace {

Handover sample() {
  Handover h;
  h.pid = 4242;
  h.written_unix = 1796215030;
  h.from_build = "0.1.0+alt";
  h.dir = "/var/lib/psync-proxy";
  h.bind = "127.0.0.1";
  h.port = 6380;
  h.status_bind = "127.0.0.1";
  h.status_port = 8380;
  h.fallback_exe_fd = 9;
  h.argv = {"/usr/local/bin/psync-proxy", "--upstream", "10.0.0.5:6379"};
  h.exe_path = "/usr/local/bin/psync-proxy";
  h.replica_listener_fd = 5;
  h.status_listener_fd = 6;
  h.start_ms = 123456789;
  h.started_unix = 1796200000;
  h.live_restarts = 3;
  h.run_id = std::string(40, 'a');
  h.counters.sync_full = 7;
  h.counters.net_output_bytes = 1ull << 40;
  h.refresh.done = 2;
  h.refresh.last_error = "a mismatch";
  h.commands_since_snapshot = 99;
  h.next_session_id = 17;
  h.upstream.fd = 7;
  h.upstream.address = "10.0.0.5:6379";
  h.upstream.mode = "sync";
  h.upstream.tail = std::string("*3\r\n$3\r\nSET\r\n\0\xff", 15);
  h.upstream.total_commands = 1000;
  SessionHandover s;
  s.fd = 11;
  s.id = 4;
  s.ip = "::1";
  s.port = 50000;
  s.state = "send_bulk";
  s.sync_kind = "full";
  s.via_psync = true;
  s.capa_psync2 = true;
  s.listening_port = 6381;
  s.cursor = 5000;
  s.acked_offset = -1;
  s.bulk_sent = 1234;
  s.has_bulk = true;
  s.bulk = SnapshotHandover{12, "/var/lib/psync-proxy/snapshot-x.rdb", 99999, 4999, std::string(40, 'b'),
                            "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n", 1796200001};
  s.out = "+FULLRESYNC x 1\r\n$99999\r\n";
  s.in = "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK";
  h.sessions.push_back(s);
  SessionHandover online = s;
  online.fd = 13;
  online.id = 5;
  online.state = "online";
  online.has_bulk = false;
  online.out.clear();
  online.in.clear();
  h.sessions.push_back(online);
  return h;
}

}  // namespace

TEST_CASE("handover: what is written is read back exactly, binary strings included") {
  const Handover h = sample();
  Handover back;
  std::string error;
  REQUIRE_MESSAGE(decode_handover(encode_handover(h), back, error), error);
  CHECK(back.pid == h.pid);
  CHECK(back.argv == h.argv);
  CHECK(back.upstream.tail == h.upstream.tail);
  CHECK(back.upstream.fd == 7);
  CHECK(back.counters.sync_full == 7);
  CHECK(back.counters.net_output_bytes == (1ull << 40));
  CHECK(back.refresh.last_error == "a mismatch");
  REQUIRE(back.sessions.size() == 2);
  CHECK(back.sessions[0].bulk.prefix == h.sessions[0].bulk.prefix);
  CHECK(back.sessions[0].bulk.fd == 12);
  CHECK(back.sessions[0].in == h.sessions[0].in);
  CHECK(back.sessions[0].out == h.sessions[0].out);
  CHECK(back.sessions[0].acked_offset == -1);
  CHECK_FALSE(back.sessions[1].has_bulk);
  CHECK(handover_fds(back) == std::vector<int>{5, 6, 7, 9, 11, 12, 13});
}

TEST_CASE("handover: another version, garbage, a missing field, a wrong type, a descriptor named twice are each an error that says which") {
  const std::string good = encode_handover(sample());
  auto edited = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(good);
    edit(j);
    return j.dump();
  };
  struct Case {
    std::string text;
    std::string error_has;
  };
  const Case cases[] = {
      {"", "not JSON"},
      {"{\"format\": \"something else\", \"version\": 1}", "not a live restart handover"},
      {edited([](nlohmann::json& j) { j["version"] = 2; }), "handover version 2"},
      {edited([](nlohmann::json& j) { j.erase("replica_listener_fd"); }), "replica_listener_fd"},
      {edited([](nlohmann::json& j) { j["replica_listener_fd"] = -1; }), "not a descriptor"},
      {edited([](nlohmann::json& j) { j["port"] = "6380"; }), "\"port\" has the wrong type"},
      {edited([](nlohmann::json& j) { j["sessions"][0]["state"] = "dancing"; }), "unknown state"},
      {edited([](nlohmann::json& j) { j["sessions"][0].erase("bulk"); }), "send_bulk without a snapshot"},
      {edited([](nlohmann::json& j) { j["sessions"][0]["in_hex"] = "zz"; }), "not hex"},
      {edited([](nlohmann::json& j) { j["upstream"]["mode"] = "carrier pigeon"; }), "neither sync nor psync"},
      {edited([](nlohmann::json& j) { j["sessions"][1]["fd"] = 11; }), "named twice"},
      {edited([](nlohmann::json& j) { j["argv"] = nlohmann::json::array(); }), "argv"},
  };
  for (const auto& c : cases) {
    Handover h;
    std::string error;
    CHECK_FALSE(decode_handover(c.text, h, error));
    CHECK_MESSAGE(error.find(c.error_has) != std::string::npos, "error: " << error << ", wanted: " << c.error_has);
  }
}

TEST_CASE("handover: hex both ways, and what is not hex") {
  std::string out;
  CHECK(to_hex(std::string("\0\x01\xab\xff", 4)) == "0001abff");
  CHECK(from_hex("0001ABff", out));
  CHECK(out == std::string("\0\x01\xab\xff", 4));
  CHECK_FALSE(from_hex("abc", out));
  CHECK_FALSE(from_hex("0g", out));
}
