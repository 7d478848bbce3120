// The data directory describes itself: what a restarted proxy needs to reopen
// its lineage instead of wiping --dir. Pure storage code, no event loop.
//
// Besides the data files (snapshot-*.rdb, log-*.seg) the directory holds:
//
//   manifest.json  What the lineage is made of: replid/replid2, the current
//                  snapshot, the log's segments, the upstream position.
//                  Rewritten whole, atomically and durably (write_manifest)
//                  when one of those changes: a new lineage or snapshot, a new
//                  segment, a trim, a new upstream stream. Never for appends.
//   commit.rec     The latest commit point (CommitRecord), rewritten in place
//                  at every commit: one pwrite, no fsync.
//
// Invariants the writer keeps (the lineage store):
//   M1. A manifest lists exactly the committed log at the moment it is
//       written: every segment but the last is complete, the last byte of the
//       last segment (log_end(m)) is committed, and upstream_offset is the
//       master offset of that byte in the stream upstream_replid. So a
//       manifest on its own is a consistent, if older, commit point.
//   M2. Between two manifests the log only grows inside the manifest's last
//       segment: a new segment is listed in a written manifest before
//       commit.rec points into it.
//   M3. What a manifest names is durable before the manifest is: the snapshot
//       (SnapshotWriter::commit fsyncs it) and the segments up to log_end(m)
//       (fdatasync before write_manifest). The fallback below relies on it.
//   C1. commit.rec is written at every commit, before any reader is told of
//       it. While the machine stays up (a process crash, SIGKILL: the page
//       cache survives) it is therefore at least as new as the manifest
//       (committed_end >= log_end(m)) and as anything a replica was sent.
//   C2. After a power loss or kernel crash commit.rec may be older than what
//       replicas were sent, or torn, or gone. Its boot id says whether it was
//       written since the machine last booted.
//
// What a reader does at start:
//   1. read_manifest(dir, error): nullopt with error "" -> nothing to reopen:
//      a new lineage, as before. nullopt with an error (bad JSON, a newer
//      format, an inconsistent manifest) -> log the error (one line), wipe the
//      directory, a new lineage.
//   2. CommitRecord::read(dir, error): a record with this_boot, and
//      check_files(dir, m, rec.committed_end, warnings) == "" -> reopen at
//      rec.committed_end: cut the last segment back to it (bytes past it are
//      a torn tail, never shown to anyone), same replid (replicas continue),
//      upstream position (rec.upstream_replid, rec.upstream_offset).
//   3. Otherwise (no record, a torn or bad one, one of an earlier boot, or
//      check_files refuses it) fall back to the manifest's own commit point:
//      check_files(dir, m, log_end(m), warnings) == "" -> reopen at
//      log_end(m) with (m.upstream_replid, m.upstream_offset), but under a NEW
//      replid, with replid2 = m.replid and second_offset = log_end(m) + 1: a
//      replica may hold bytes past that point which the reopened log does not
//      have (or will have different ones); PSYNC <old replid> beyond
//      second_offset then gets a full resync, at or before it a +CONTINUE, as
//      after a Redis failover.
//   4. check_files refuses that too -> log the error, wipe, a new lineage.
//   In steps 2 and 3 warnings (stray segment files) are logged, and the
//   strays are deleted before the log is appended to: one past the commit
//   point would otherwise end up inside the log on the next start.
#pragma once

#include <array>
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

// ----- The commit record -----------------------------------------------------

// CRC-32 (IEEE 802.3, as zlib's crc32()): the commit record's checksum.
uint32_t crc32(std::string_view bytes, uint32_t crc = 0);

// <dir>/commit.rec: the latest commit point, one fixed-size record of kSize
// bytes at offset 0 (little endian):
//    0  magic "PSYNCREC"          40  boot id (16 bytes)
//    8  u32 version (1)           56  u8 length of the upstream replid (0 or 40)
//   12  u32 record size (kSize)   57  upstream replid (40 bytes, zero padded)
//   16  u64 sequence              97  zeros
//   24  u64 committed_end        124  u32 crc32 of bytes [0, 124)
//   32  u64 upstream_offset
// Magic, version and size keep their places in every version, and the
// checksum is always the last 4 bytes of the size given.
//
// A record is written with ONE pwrite at offset 0, without fsync: the page
// cache survives a process crash, not a power loss (C1, C2). It is far
// smaller than a 512-byte sector, so the device writes it whole or not at
// all; where one still tears it (or the file was never written, or was cut),
// read() finds a bad checksum, bad magic or a wrong size, and the reader falls
// back to the manifest's commit point (step 3 at the top of this file).
class CommitRecord {
 public:
  static constexpr const char* kFileName = "commit.rec";
  static constexpr uint32_t kVersion = 1;
  static constexpr size_t kSize = 128;
  static_assert(kSize < 512);
  using BootId = std::array<uint8_t, 16>;

  struct Rec {
    uint64_t sequence = 0;         // 1 for the first record, +1 for each
    uint64_t committed_end = 0;    // log offset of the last committed byte
    uint64_t upstream_offset = 0;  // master offset of that byte
    std::string upstream_replid;   // "" when the upstream link cannot be resumed
    BootId boot_id{};              // of the machine's boot it was written in
    bool this_boot = false;        // boot_id is the current one (and known)
  };

  // Opens <dir>/commit.rec (O_RDWR | O_CREAT | O_CLOEXEC, mode 0600), without
  // writing to it. The sequence goes on from the record in it when that one is
  // valid. Throws LogError.
  static CommitRecord open(const std::string& dir);

  CommitRecord(CommitRecord&& other) noexcept;
  CommitRecord& operator=(CommitRecord&& other) noexcept;
  CommitRecord(const CommitRecord&) = delete;
  CommitRecord& operator=(const CommitRecord&) = delete;
  ~CommitRecord();

  // The upstream stream the next records' upstream_offset belong to ("" or 40
  // hex digits, else std::invalid_argument). Taken by the next write(): call
  // write() again at the same end to make a change without a commit count.
  void set_upstream_replid(const std::string& replid);
  // The commit point: one pwrite at offset 0, no fsync. Throws LogError (the
  // file may then hold a torn record; the next write() replaces it whole).
  void write(uint64_t committed_end, uint64_t upstream_offset);
  // fdatasync of the file: durable across a power loss. Blocking: run it off
  // the event loop. It may run on another thread concurrently with write()
  // (it only uses the fd, fixed for the object's life); the object must not be
  // moved or destroyed meanwhile. Throws LogError.
  void sync();

  // Of the last record written, or of the valid one found by open() (0 if none).
  uint64_t sequence() const { return sequence_; }
  const std::string& path() const { return path_; }

  // Reads <dir>/commit.rec. nullopt and an error naming the file when it is
  // missing, cannot be read, is empty, has the wrong size, bad magic, a bad
  // checksum (a torn or corrupted write), or a newer version.
  static std::optional<Rec> read(const std::string& dir, std::string& error);

  // /proc/sys/kernel/random/boot_id; all zeros when it cannot be read (then no
  // record counts as this_boot).
  static BootId current_boot_id();

 private:
  CommitRecord(std::string path, int fd, uint64_t sequence, BootId boot_id);

  std::string path_;
  int fd_ = -1;
  uint64_t sequence_ = 0;
  BootId boot_id_{};
  std::string upstream_replid_;
};

// ----- Checking the files against the manifest -------------------------------

// "" when the files of dir hold what m lists, with the log committed up to
// committed_end; else a clear error naming the file. Checks:
//   - m is consistent (validate_manifest);
//   - the snapshot file exists, regular, with exactly snapshot->bytes bytes;
//   - log_end(m) <= committed_end (M1, C1: a commit record is never older
//     than a manifest while the machine stays up), and committed_end falls in
//     the last segment (M2), or is log_first_offset - 1 with no segments;
//   - every segment file exists; each but the last holds at least its size;
//     the last holds every byte up to committed_end (it may be longer: a torn
//     tail, which the caller cuts);
//   - no log-*.seg file the manifest does not list has its first byte inside
//     [log_first_offset, committed_end].
// Contents are not read: a size is all that is checked.
// warnings receives the stray log-*.seg files that are not an error (before
// the log, or past committed_end: a segment started for bytes never
// committed), "" when there are none. The caller deletes them.
std::string check_files(const std::string& dir, const Manifest& m, uint64_t committed_end,
                        std::string& warnings);

}  // namespace psync::backlog
