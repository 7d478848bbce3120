// What one image of the proxy hands the next at a live restart (SIGUSR2,
// proxy/live_restart.h): the open descriptors, by number, and what the new
// image needs to go on using them as if nothing had happened. The lineage
// itself is not in it: the store reopens from the data directory (the commit
// record is the exact commit point), as after any restart.
//
// The handover is a JSON file in --dir (kHandoverFile), named to the new
// image by the environment (kStateEnv). Binary strings (stream bytes, replies
// not yet written) are hex. Pure: encoded, decoded and checked here (unit
// tested and fuzzed); nothing in this file touches a descriptor.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/proxy.h"  // Counters
#include "proxy/refresher.h"

namespace psync::proxy {

// Raised when a build changes what is handed over: a binary that does not
// read this version is refused before the exec (the pre-flight check).
constexpr int kHandoverVersion = 1;
constexpr const char* kHandoverFile = "live-restart.json";
// Left by a new image that failed to take a handover over: why (one line),
// for the previous image, which takes it over instead, to report.
constexpr const char* kFailedHandoverFile = "live-restart.failed";
// The handover file's path, for the new image.
constexpr const char* kStateEnv = "PSYNC_PROXY_LIVE_STATE";
// Set for an image exec'd again because the one after it failed: it must
// not fall back further (see proxy/live_restart.h).
constexpr const char* kFallbackEnv = "PSYNC_PROXY_LIVE_FALLBACK";

// A snapshot file a replica is being sent (its descriptor: the file may be
// unlinked already, replaced by a refreshed one).
struct SnapshotHandover {
  int fd = -1;
  std::string path;
  uint64_t size = 0;
  uint64_t offset = 0;
  std::string replid;
  std::string prefix;
  int64_t created_unix = 0;
};

// One replica (or client) connection: ReplicaSession's state.
struct SessionHandover {
  int fd = -1;
  uint64_t id = 0;
  std::string ip;
  int port = 0;
  uint64_t age_ms = 0;  // since it connected
  std::string state;    // ReplicaSession::state_name()
  std::string sync_kind;  // ReplicaSession::sync_name()
  bool authenticated = false;
  bool capa_psync2 = false;
  bool rdb_only = false;
  bool via_psync = false;
  int listening_port = 0;
  std::string name;  // CLIENT SETNAME
  uint64_t cursor = 0;
  int64_t acked_offset = 0;
  uint64_t bulk_sent = 0;
  bool has_bulk = false;
  SnapshotHandover bulk;
  std::string out;  // replies and headers not yet written
  std::string in;   // bytes received and not yet parsed into a command
};

// The upstream link, when it was streaming: the socket, stopped at a command
// boundary (tail: the bytes read past it, at most one read).
struct UpstreamHandover {
  int fd = -1;  // -1: no connection to hand over (the new image connects)
  std::string address;  // --upstream it was made to
  std::string mode;     // Link::mode_name(): "sync" or "psync"
  std::string tail;
  std::string master_version;
  uint64_t sync_count = 0;
  uint64_t partial_resyncs = 0;
  uint64_t total_bytes = 0;
  uint64_t total_commands = 0;
};

struct Handover {
  int version = kHandoverVersion;
  int64_t pid = 0;  // the process: a handover is only ever read by the same pid
  int64_t written_unix = 0;
  std::string from_build;  // build_id() of the image that wrote it
  // The settings the descriptors were made for; the new image must match.
  std::string dir;
  std::string bind;
  int port = 0;
  std::string status_bind;
  int status_port = 0;
  // The exec: what to run again if the new image fails (fallback_exe_fd is
  // the old image's binary, open without FD_CLOEXEC), and with what.
  int fallback_exe_fd = -1;
  std::vector<std::string> argv;
  std::string exe_path;

  int replica_listener_fd = -1;
  int status_listener_fd = -1;  // -1: no status port
  uint64_t start_ms = 0;        // monotonic ms when the process first started
  int64_t started_unix = 0;
  uint64_t live_restarts = 0;   // including this one
  uint64_t live_restart_fallbacks = 0;
  int64_t live_restart_attempt_unix = 0;  // when this live restart was asked for
  std::string run_id;
  Counters counters;
  Refresher::Stats refresh;
  uint64_t commands_since_snapshot = 0;
  uint64_t next_session_id = 1;
  UpstreamHandover upstream;
  std::vector<SessionHandover> sessions;
};

std::string encode_handover(const Handover& h);
// false with error set when the text is not a handover of this version, or a
// field is missing or out of range (a descriptor number < 0 where one is
// required, an unknown session state).
bool decode_handover(std::string_view text, Handover& h, std::string& error);
// Every descriptor the handover names, once each (sessions, their snapshot
// files, the listeners, the upstream, the fallback binary).
std::vector<int> handover_fds(const Handover& h);

// Lowercase hex of bytes, and back (false on an odd length or a non-hex digit).
std::string to_hex(std::string_view bytes);
bool from_hex(std::string_view hex, std::string& out);

}  // namespace psync::proxy
