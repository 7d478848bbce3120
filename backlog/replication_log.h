// The replication log: the proxy's own stream, addressed by Redis-style
// replication offsets (the first byte ever has offset 1; last_offset() is
// master_repl_offset), kept in segment files on disk. Readers are cursors
// that ask for spans (fd, position, length) and send them with sendfile(2):
// the log is never held in memory, whatever its size or the number of readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace psync::backlog {

// An I/O failure, with the path and strerror text in what().
class LogError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One segment file. Held by shared_ptr: a reader keeps it (and its open fd)
// alive while it sends from it, even after trim_before() unlinked the file.
struct Segment {
  uint64_t first_offset = 0;  // offset of the segment's first byte
  uint64_t size = 0;          // bytes written to it
  int fd = -1;                // O_RDWR, closed by the destructor
  std::string path;
  ~Segment();
};

// A contiguous run of log bytes inside one segment file.
struct Span {
  int fd = -1;
  uint64_t file_pos = 0;
  size_t len = 0;
  std::shared_ptr<const Segment> segment;  // keeps fd valid while in use
};

class ReplicationLog {
 public:
  // dir must exist. Segment files are named log-<first offset, 20 digits>.seg
  // and created with mode 0600. A new segment starts when the current one
  // holds segment_bytes or more.
  explicit ReplicationLog(std::string dir, uint64_t segment_bytes = 64ull << 20);
  ReplicationLog(const ReplicationLog&) = delete;
  ReplicationLog& operator=(const ReplicationLog&) = delete;

  // Forgets and deletes every segment (files of an earlier run in dir
  // included) and starts empty: the next appended byte gets next_offset.
  void reset(uint64_t next_offset);

  // Appends bytes. Throws LogError on a failed write (ENOSPC, EIO ...); then
  // nothing of these bytes is visible (last_offset() unchanged, the file
  // truncated back).
  void append(std::string_view bytes);

  uint64_t first_offset() const;  // first retained byte; last_offset()+1 when empty
  uint64_t last_offset() const;   // offset of the last byte appended
  uint64_t next_offset() const { return last_offset() + 1; }

  // True when offset is a position a reader may stand at:
  // first_offset() <= offset <= last_offset() + 1.
  bool contains(uint64_t offset) const;

  // Up to max_len bytes starting at offset, all inside one segment; len 0 when
  // offset == next_offset(). Throws std::out_of_range unless contains(offset).
  Span span(uint64_t offset, size_t max_len) const;

  // Copies up to len bytes starting at offset into out; returns the count.
  // For tests and small reads. Same precondition as span().
  size_t read(uint64_t offset, char* out, size_t len) const;

  // Drops every byte at or after new_next_offset: next_offset() becomes
  // new_next_offset. Used to take back the unfinished command a lost link
  // left at the end (readers are never shown such bytes). Throws
  // std::out_of_range unless first_offset() <= new_next_offset <= next_offset(),
  // LogError on an I/O failure.
  void truncate_to(uint64_t new_next_offset);

  // Deletes whole segments all of whose bytes are below keep_from. The
  // segment being written is never deleted.
  void trim_before(uint64_t keep_from);

  uint64_t bytes_on_disk() const;
  size_t segment_count() const { return segments_.size(); }
  const std::string& dir() const { return dir_; }

 private:
  void open_segment(uint64_t first_offset);

  std::string dir_;
  uint64_t segment_bytes_;
  uint64_t next_offset_ = 1;
  std::deque<std::shared_ptr<Segment>> segments_;
};

}  // namespace psync::backlog
