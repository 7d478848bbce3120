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
#include <vector>

namespace psync::backlog {

// An I/O failure, with the path and strerror text in what().
class LogError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An open file descriptor, closed when the last holder lets go.
struct OpenFile {
  int fd = -1;
  explicit OpenFile(int f) : fd(f) {}
  ~OpenFile();
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
};

// One segment file. Its descriptor is open only while the segment is written
// (the last segment) or recently read (at most kMaxReadFiles others, least
// recently read closed first): a lineage of any length holds a few fds, not
// one per segment.
struct Segment {
  uint64_t first_offset = 0;  // offset of the segment's first byte
  uint64_t size = 0;          // bytes of the log in it; the file may be longer (see append)
  std::string path;
  std::shared_ptr<OpenFile> file;  // null while closed
  uint64_t last_read = 0;          // the log's read clock when last opened for a span
};

// A contiguous run of log bytes inside one segment file. The Span holds the
// file open: a reader can send from it even after trim_before() unlinked it.
struct Span {
  int fd = -1;
  uint64_t file_pos = 0;
  size_t len = 0;
  std::shared_ptr<const OpenFile> file;  // keeps fd valid while in use
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

  // A segment as a manifest lists it (restart): its file name in dir, first
  // offset and size.
  struct SegmentInfo {
    std::string file;
    uint64_t first_offset = 0;
    uint64_t size = 0;
  };
  // The log as it stands: the segments in order (the last one's size is what
  // the log holds of it).
  std::vector<SegmentInfo> segments() const;
  // Reopens segments an earlier run wrote (restart): they must be contiguous,
  // and the log ends at next_offset - 1, inside or at the end of the last one
  // (whose file is cut there: a torn tail goes). first_offset is the log's
  // first byte when segments is empty. Throws LogError (a file that cannot be
  // opened or is shorter than listed) or std::invalid_argument.
  void reopen(const std::vector<SegmentInfo>& segments, uint64_t first_offset, uint64_t next_offset);

  // Appends bytes. Throws LogError on a failed write (ENOSPC, EIO ...); then
  // nothing of these bytes is in the log (last_offset() unchanged; the file is
  // truncated back where that works).
  //
  // Invariant: the log is [first_offset(), last_offset()] and nothing else.
  // Bytes of a file past its segment's size are junk that no reader is ever
  // given (spans stop at size) and that the next append overwrites (writes go
  // to an explicit position, never "the end of the file"). So neither a failed
  // write nor a failed ftruncate can leave bytes in the log that were not
  // appended whole.
  void append(std::string_view bytes);

  uint64_t first_offset() const;  // first retained byte; last_offset()+1 when empty
  uint64_t last_offset() const;   // offset of the last byte appended
  uint64_t next_offset() const { return last_offset() + 1; }

  // True when offset is a position a reader may stand at:
  // first_offset() <= offset <= last_offset() + 1.
  bool contains(uint64_t offset) const;

  // Up to max_len bytes starting at offset, all inside one segment; len 0 when
  // offset == next_offset(). Throws std::out_of_range unless contains(offset),
  // LogError when the segment file cannot be opened.
  Span span(uint64_t offset, size_t max_len) const;

  // Copies up to len bytes starting at offset into out; returns the count.
  // For tests and small reads. Same precondition as span().
  size_t read(uint64_t offset, char* out, size_t len) const;

  // Drops every byte at or after new_next_offset: next_offset() becomes
  // new_next_offset. Used to take back what was appended but never committed
  // (readers are never shown such bytes). Throws std::out_of_range unless
  // first_offset() <= new_next_offset <= next_offset(). The cut itself cannot
  // fail (see append); tidying the files (ftruncate, unlink of whole segments
  // past the cut) is best effort: the returned text says what failed, "" when
  // all went well.
  [[nodiscard]] std::string truncate_to(uint64_t new_next_offset);

  // Deletes whole segments all of whose bytes are below keep_from. The
  // segment being written is never deleted.
  void trim_before(uint64_t keep_from);
  // The first offset trim_before(keep_from) would keep (first_offset() when
  // it would delete nothing).
  uint64_t first_kept_by_trim(uint64_t keep_from) const;
  // Changes whenever a segment is added to or removed from the list: a cheap
  // way to tell that segments() changed.
  uint64_t segment_list_generation() const { return list_generation_; }

  // fdatasync of every segment file (a clean shutdown). Throws LogError.
  void sync_all() const;

  uint64_t bytes_on_disk() const;
  size_t segment_count() const { return segments_.size(); }
  // Segment files held open by the log itself (spans may hold more).
  size_t open_files() const;
  const std::string& dir() const { return dir_; }

  // Segments other than the one written that stay open after a read.
  static constexpr size_t kMaxReadFiles = 8;

 private:
  void open_segment(uint64_t first_offset);
  // The segment's file, opened for reading if closed; may close the least
  // recently read other one.
  const std::shared_ptr<OpenFile>& file_for_read(Segment& seg) const;

  std::string dir_;
  uint64_t segment_bytes_;
  uint64_t next_offset_ = 1;
  std::deque<std::shared_ptr<Segment>> segments_;
  mutable uint64_t read_clock_ = 0;
  uint64_t list_generation_ = 0;
};

}  // namespace psync::backlog
