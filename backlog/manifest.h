// The data directory describes itself: what a restarted proxy needs to reopen
// its lineage instead of wiping --dir. Pure storage code, no event loop.
//
// manifest.json says what the lineage is made of: replid/replid2, the current
// snapshot, the log's segments, the upstream position. It is rewritten whole,
// atomically and durably (write_manifest) when one of those changes: a new
// lineage or snapshot, a new segment, a trim, a new upstream stream. Never for
// appends.
//
// Invariant the writer keeps (the lineage store):
//   M1. A manifest lists exactly the committed log at the moment it is
//       written: every segment but the last is complete, the last byte of the
//       last segment (log_end(m)) is committed, and upstream_offset is the
//       master offset of that byte in the stream upstream_replid. So a
//       manifest on its own is a consistent, if older, commit point.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backlog/replication_log.h"  // LogError

namespace psync::backlog {

// ----- The manifest ----------------------------------------------------------

struct ManifestSnapshot {
  std::string file;      // a plain name in the data directory
  uint64_t offset = 0;   // S: the log goes on at S+1
  std::string prefix;    // arbitrary bytes (a RESP SELECT); hex in the JSON ("prefix_hex")
  uint64_t bytes = 0;    // the file's exact size
  int64_t created_unix = 0;
  friend bool operator==(const ManifestSnapshot&, const ManifestSnapshot&) = default;
};

struct ManifestSegment {
  std::string file;           // segment_file_name(first_offset)
  uint64_t first_offset = 0;
  uint64_t size = 0;          // committed bytes in it when the manifest was written
  friend bool operator==(const ManifestSegment&, const ManifestSegment&) = default;
};

// As JSON (to_json), field by field:
//   {"format": 1, "replid": "<40 hex>", "replid2": "<40 hex>", "second_offset": -1,
//    "lineage_start": S0,
//    "snapshot": {"file", "offset", "prefix_hex", "bytes", "created_unix"} | null,
//    "log": {"first_offset": F, "segments": [{"file", "first_offset", "size"}, ...]},
//    "upstream": {"replid": "<40 hex>" | "", "offset": U}}
// Unknown fields are ignored (a later psync-proxy may add some without a new
// format number); a missing one is an error.
struct Manifest {
  static constexpr int kFormat = 1;  // the only version this code reads and writes

  int format = kFormat;
  std::string replid;   // 40 hex digits; "" only when there is no lineage (no snapshot)
  std::string replid2 = std::string(40, '0');  // as Redis: 40 zeros and -1 when none
  int64_t second_offset = -1;
  uint64_t lineage_start = 0;  // offset of the lineage's first snapshot
  std::optional<ManifestSnapshot> snapshot;  // present exactly when replid is
  uint64_t log_first_offset = 1;             // log_end(m) + 1 when there are no segments
  std::vector<ManifestSegment> segments;     // contiguous, in order, from log_first_offset
  std::string upstream_replid;  // the master's; "" when the link cannot be resumed
  uint64_t upstream_offset = 0; // master offset of log_end(*this)
  friend bool operator==(const Manifest&, const Manifest&) = default;
};

// The last byte the manifest lists: the end of its last segment, or
// log_first_offset - 1 when it lists none (M1: a committed byte).
uint64_t log_end(const Manifest& m);

// The name ReplicationLog gives the segment whose first byte is first_offset:
// log-<20 digits>.seg.
std::string segment_file_name(uint64_t first_offset);

// "" when m is consistent, else what is wrong, with the JSON field it is in
// ("log.segments[2]: ..."). parse_manifest and write_manifest apply it.
std::string validate_manifest(const Manifest& m);

// Pretty-printed JSON, fields in the order above, ending with a newline.
std::string to_json(const Manifest& m);

// Parses and validates. On failure nullopt, and error says what is wrong,
// prefixed by path: bad JSON (with the byte position), a newer format
// ("written by a newer psync-proxy (format 2; this one reads 1)"), a missing
// field, a wrong type, or what validate_manifest() finds.
std::optional<Manifest> parse_manifest(std::string_view text, const std::string& path,
                                       std::string& error);

// Writes <dir>/manifest.json atomically and durably: <dir>/manifest.json.tmp
// (mode 0600), fsync, rename over manifest.json, fsync of dir. Throws
// std::invalid_argument when validate_manifest(m) fails (nothing written: no
// manifest that could not be read back), LogError (path and strerror) when
// the file system fails. A failure before the rename removes the temp file and
// leaves the previous manifest as it was; a failed fsync of the directory
// (after the rename, so the only failure then) leaves the new manifest in
// place, maybe not durable. One writer per directory at a time.
void write_manifest(const std::string& dir, const Manifest& m);

// Reads <dir>/manifest.json: nullopt and error "" when there is none, nullopt
// and an error naming the file when it cannot be read or is bad.
std::optional<Manifest> read_manifest(const std::string& dir, std::string& error);

}  // namespace psync::backlog
