// The snapshot store: the RDB of the current lineage, taken at offset S, on
// disk in the data directory. A download goes to a temp file; only a complete
// one is fsynced and renamed into place, so an interrupted download is never
// used.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "backlog/replication_log.h"  // LogError

namespace psync::backlog {

// A complete snapshot. Held by shared_ptr: every replica that is being sent
// the file holds it, and the fd stays valid until the last one lets go, even
// after discard() unlinked the file.
class Snapshot {
 public:
  Snapshot(std::string path, int fd, uint64_t size, uint64_t offset, std::string replid,
           int64_t created_unix, std::string prefix = {});
  ~Snapshot();  // closes fd
  // Reopens a stored snapshot file (restart). Throws LogError when it cannot
  // be opened or does not hold exactly `size` bytes.
  static std::shared_ptr<Snapshot> open(const std::string& path, uint64_t size, uint64_t offset,
                                        std::string replid, int64_t created_unix, std::string prefix);
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }              // O_RDONLY, for sendfile/pread
  uint64_t size() const { return size_; }      // RDB bytes
  uint64_t offset() const { return offset_; }  // S: the first stream byte after it is S+1
  // Stream bytes a replica gets right after the RDB and before the log from
  // S+1, counted in its offsets: +FULLRESYNC <replid> S-len(prefix). Empty
  // for the snapshot a lineage starts from; SELECT <db at S> for one taken
  // within a lineage (the RDB cannot say which db the stream is in at S).
  const std::string& prefix() const { return prefix_; }
  uint64_t fullresync_offset() const { return offset_ - prefix_.size(); }
  const std::string& replid() const { return replid_; }
  int64_t created_unix() const { return created_unix_; }
  // Unlinks the file (a newer snapshot replaced it); open readers go on.
  void discard();

 private:
  std::string path_;
  int fd_;
  uint64_t size_;
  uint64_t offset_;
  std::string replid_;
  int64_t created_unix_;
  std::string prefix_;
};

class SnapshotWriter {
 public:
  // Creates <dir>/snapshot.rdb.tmp, or snapshot-<tag>.rdb.tmp (truncated,
  // mode 0600): two downloads at once need two tags. Throws LogError.
  explicit SnapshotWriter(const std::string& dir, const std::string& tag = {});
  ~SnapshotWriter();  // abort() unless committed
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // Appends RDB bytes. Throws LogError (ENOSPC ...).
  void write(std::string_view bytes);
  uint64_t bytes() const { return bytes_; }

  // fsync, rename to <dir>/snapshot-<replid>.rdb (snapshot-<replid>-<offset>.rdb
  // when there is a prefix: one taken within a lineage), fsync the directory, reopen
  // read-only. Blocking for the length of an fsync of the whole file: call it
  // off the event loop thread. Throws LogError; the temp file is then removed.
  std::shared_ptr<Snapshot> commit(const std::string& replid, uint64_t offset,
                                   const std::string& prefix = {});

  // Closes and unlinks the temp file. Idempotent.
  void abort();

 private:
  std::string dir_;
  std::string tmp_path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  bool done_ = false;
};

// Removes what an earlier run left in dir: snapshot-*.rdb, *.tmp, log-*.seg,
// manifest.json, commit.rec.
// Returns how many files were removed.
size_t clean_data_dir(const std::string& dir);

}  // namespace psync::backlog
