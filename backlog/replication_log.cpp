#include "backlog/replication_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace psync::backlog {

namespace {

[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw LogError(path + ": " + what + ": " + std::strerror(err));
}

bool is_segment_name(std::string_view name) {
  return name.size() > 8 && name.starts_with("log-") && name.ends_with(".seg");
}

std::string segment_path(const std::string& dir, uint64_t first_offset) {
  char name[64];
  std::snprintf(name, sizeof name, "log-%020llu.seg",
                static_cast<unsigned long long>(first_offset));
  return dir + "/" + name;
}

// Unlinks every log-*.seg file in dir (not directories).
void remove_segment_files(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) fail(dir, "opendir", errno);
  int err = 0;
  std::string failed;
  while (dirent* entry = readdir(d)) {
    if (!is_segment_name(entry->d_name)) continue;
    struct stat st;
    if (fstatat(dirfd(d), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) continue;
    if (unlinkat(dirfd(d), entry->d_name, 0) != 0 && errno != ENOENT && err == 0) {
      err = errno;
      failed = dir + "/" + entry->d_name;
    }
  }
  closedir(d);
  if (err != 0) fail(failed, "unlink", err);
}

}  // namespace

OpenFile::~OpenFile() {
  if (fd >= 0) close(fd);
}

ReplicationLog::ReplicationLog(std::string dir, uint64_t segment_bytes)
    : dir_(std::move(dir)), segment_bytes_(std::max<uint64_t>(segment_bytes, 1)) {}

void ReplicationLog::reset(uint64_t next_offset) {
  if (next_offset == 0) throw std::invalid_argument("ReplicationLog::reset: offset 0");
  // Readers holding a Span keep their file open until they let go.
  segments_.clear();
  ++list_generation_;
  next_offset_ = next_offset;
  remove_segment_files(dir_);
}

std::vector<ReplicationLog::SegmentInfo> ReplicationLog::segments() const {
  std::vector<SegmentInfo> out;
  for (const auto& seg : segments_) {
    out.push_back({seg->path.substr(seg->path.rfind('/') + 1), seg->first_offset, seg->size});
  }
  return out;
}

void ReplicationLog::reopen(const std::vector<SegmentInfo>& segments, uint64_t first_offset, uint64_t next_offset) {
  if (first_offset == 0 || next_offset < first_offset) throw std::invalid_argument("ReplicationLog::reopen: bad offsets");
  std::deque<std::shared_ptr<Segment>> opened;
  uint64_t expect = segments.empty() ? first_offset : segments.front().first_offset;
  for (size_t i = 0; i < segments.size(); ++i) {
    const SegmentInfo& info = segments[i];
    if (info.first_offset != expect || info.file.find('/') != std::string::npos) {
      throw std::invalid_argument("ReplicationLog::reopen: segments not contiguous at " + info.file);
    }
    auto seg = std::make_shared<Segment>();
    seg->first_offset = info.first_offset;
    seg->path = dir_ + "/" + info.file;
    const bool last = i + 1 == segments.size();
    seg->size = last ? next_offset - info.first_offset : info.size;
    if (last && (next_offset < info.first_offset)) {
      throw std::invalid_argument("ReplicationLog::reopen: the end lies before the last segment");
    }
    struct stat st;
    if (::stat(seg->path.c_str(), &st) != 0) fail(seg->path, "stat", errno);
    if (static_cast<uint64_t>(st.st_size) < seg->size) {
      throw LogError(seg->path + ": holds " + std::to_string(st.st_size) + " bytes, the log needs " +
                     std::to_string(seg->size));
    }
    if (last) {
      int fd = open(seg->path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) fail(seg->path, "open", errno);
      seg->file = std::make_shared<OpenFile>(fd);
      // A torn tail (bytes appended and never committed before the crash).
      if (static_cast<uint64_t>(st.st_size) > seg->size && ftruncate(fd, static_cast<off_t>(seg->size)) != 0) {
        fail(seg->path, "ftruncate", errno);
      }
    }
    expect = info.first_offset + seg->size;
    opened.push_back(std::move(seg));
  }
  if (!segments.empty() && expect != next_offset) {
    throw std::invalid_argument("ReplicationLog::reopen: the segments end at " + std::to_string(expect) +
                                ", not at " + std::to_string(next_offset));
  }
  segments_ = std::move(opened);
  ++list_generation_;
  next_offset_ = segments_.empty() ? first_offset : next_offset;
}

void ReplicationLog::open_segment(uint64_t first_offset) {
  auto seg = std::make_shared<Segment>();
  seg->first_offset = first_offset;
  seg->path = segment_path(dir_, first_offset);
  int fd = open(seg->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail(seg->path, "open", errno);
  seg->file = std::make_shared<OpenFile>(fd);
  // The segment written so far is only read from now on: reopened when a
  // reader needs it.
  if (!segments_.empty()) segments_.back()->file.reset();
  segments_.push_back(std::move(seg));
  ++list_generation_;
}

// One append always goes whole into one segment (it is never split), so a
// segment may end up larger than segment_bytes.
void ReplicationLog::append(std::string_view bytes) {
  if (bytes.empty()) return;
  bool opened = false;
  // A last segment with no file is one truncate_to() could not reopen for
  // writing: the bytes go to a new segment.
  if (segments_.empty() || segments_.back()->size >= segment_bytes_ || !segments_.back()->file) {
    open_segment(next_offset_);
    opened = true;
  }
  Segment& seg = *segments_.back();
  const int fd = seg.file->fd;

  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done,
                         static_cast<off_t>(seg.size + done));
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int err = n < 0 ? errno : EIO;  // write() returning 0 for a non-empty buffer: treat as EIO
    std::string path = seg.path;
    std::string what = "write";
    if (opened) {
      // The segment was created for these bytes: remove it altogether.
      unlink(path.c_str());
      segments_.pop_back();
      ++list_generation_;
    } else if (ftruncate(fd, static_cast<off_t>(seg.size)) != 0) {
      // Harmless if it fails: the partial bytes lie past seg.size (see the
      // invariant in the header).
      what += " (and ftruncate: " + std::string(std::strerror(errno)) + ")";
    }
    fail(path, what.c_str(), err);
  }
  seg.size += bytes.size();
  next_offset_ += bytes.size();
}

size_t ReplicationLog::open_files() const {
  size_t n = 0;
  for (const auto& seg : segments_) n += seg->file ? 1 : 0;
  return n;
}

const std::shared_ptr<OpenFile>& ReplicationLog::file_for_read(Segment& seg) const {
  seg.last_read = ++read_clock_;
  if (seg.file) return seg.file;
  int fd = open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(seg.path, "open", errno);
  seg.file = std::make_shared<OpenFile>(fd);
  // Bound the read files: close the least recently read one (never the
  // segment being written, never this one). A Span holding it keeps its fd.
  size_t open_readers = 0;
  Segment* oldest = nullptr;
  for (size_t i = 0; i + 1 < segments_.size(); ++i) {
    Segment* s = segments_[i].get();
    if (!s->file) continue;
    ++open_readers;
    if (s != &seg && (oldest == nullptr || s->last_read < oldest->last_read)) oldest = s;
  }
  if (open_readers > kMaxReadFiles && oldest != nullptr) oldest->file.reset();
  return seg.file;
}

uint64_t ReplicationLog::first_offset() const {
  return segments_.empty() ? next_offset_ : segments_.front()->first_offset;
}

uint64_t ReplicationLog::last_offset() const { return next_offset_ - 1; }

bool ReplicationLog::contains(uint64_t offset) const {
  return first_offset() <= offset && offset <= next_offset_;
}

Span ReplicationLog::span(uint64_t offset, size_t max_len) const {
  if (!contains(offset)) {
    throw std::out_of_range("replication log: offset " + std::to_string(offset) +
                            " outside [" + std::to_string(first_offset()) + ", " +
                            std::to_string(next_offset_) + "]");
  }
  Span result;
  if (offset == next_offset_) {
    if (!segments_.empty()) {
      const auto& last = segments_.back();
      result.file = file_for_read(*last);
      result.fd = result.file->fd;
      result.file_pos = last->size;
    }
    return result;
  }
  // The last segment whose first_offset <= offset. contains() guarantees that
  // one exists and that offset lies inside it.
  auto it = std::upper_bound(
      segments_.begin(), segments_.end(), offset,
      [](uint64_t off, const std::shared_ptr<Segment>& seg) { return off < seg->first_offset; });
  const auto& seg = *std::prev(it);
  uint64_t pos = offset - seg->first_offset;
  result.file = file_for_read(*seg);
  result.fd = result.file->fd;
  result.file_pos = pos;
  result.len = static_cast<size_t>(std::min<uint64_t>(max_len, seg->size - pos));
  return result;
}

size_t ReplicationLog::read(uint64_t offset, char* out, size_t len) const {
  if (len == 0) span(offset, 0);  // checks the precondition (the loop below does otherwise)
  size_t done = 0;
  while (done < len) {
    Span s = span(offset + done, len - done);
    if (s.len == 0) break;  // reached next_offset()
    size_t got = 0;
    while (got < s.len) {
      ssize_t n = pread(s.fd, out + done + got, s.len - got, static_cast<off_t>(s.file_pos + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(dir_ + "/log-*.seg", "pread", errno);
      if (n == 0) throw LogError(dir_ + ": pread of a log segment: unexpected end of file");
      got += static_cast<size_t>(n);
    }
    done += got;
  }
  return done;
}

std::string ReplicationLog::truncate_to(uint64_t new_next_offset) {
  if (new_next_offset < first_offset() || new_next_offset > next_offset_) {
    throw std::out_of_range("replication log: cannot truncate to " + std::to_string(new_next_offset) +
                            " outside [" + std::to_string(first_offset()) + ", " +
                            std::to_string(next_offset_) + "]");
  }
  // The cut is made in memory first: from here on no reader is given a byte
  // at or past new_next_offset and the next append writes at it, whatever the
  // files say. Whole segments that start at or after the new end go; the one
  // that holds the new end is cut (it may become empty and stay as the
  // segment written to).
  std::string problems;
  auto note = [&problems](const std::string& path, const char* what) {
    problems += (problems.empty() ? "" : "; ") + path + ": " + what + ": " + std::strerror(errno);
  };
  next_offset_ = new_next_offset;
  bool last_changed = false;
  while (segments_.size() > 1 && segments_.back()->first_offset >= new_next_offset) {
    std::string path = segments_.back()->path;
    segments_.pop_back();
    ++list_generation_;
    last_changed = true;
    if (unlink(path.c_str()) != 0 && errno != ENOENT) note(path, "unlink");
  }
  if (!segments_.empty()) {
    Segment& seg = *segments_.back();
    uint64_t keep = new_next_offset - seg.first_offset;
    if (keep < seg.size) seg.size = keep;
    if (last_changed) {
      // It becomes the segment written to again: its file (if open) may be a
      // read-only one.
      seg.file.reset();
      int fd = open(seg.path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd >= 0) {
        seg.file = std::make_shared<OpenFile>(fd);
      } else {
        note(seg.path, "open");  // append() starts a new segment instead
      }
    }
    if (seg.file && ftruncate(seg.file->fd, static_cast<off_t>(seg.size)) != 0) note(seg.path, "ftruncate");
    if (!seg.file && seg.size == 0) {
      segments_.pop_back();
      ++list_generation_;
    }
  }
  return problems;
}

uint64_t ReplicationLog::first_kept_by_trim(uint64_t keep_from) const {
  // Never the last segment: it is the one being written.
  for (size_t i = 0; i + 1 < segments_.size(); ++i) {
    const Segment& seg = *segments_[i];
    if (seg.first_offset + seg.size > keep_from) return seg.first_offset;  // its last byte >= keep_from
  }
  return segments_.empty() ? next_offset_ : segments_.back()->first_offset;
}

void ReplicationLog::trim_before(uint64_t keep_from) {
  const uint64_t first_kept = first_kept_by_trim(keep_from);
  while (!segments_.empty() && segments_.front()->first_offset < first_kept) {
    const Segment& front = *segments_.front();
    if (unlink(front.path.c_str()) != 0 && errno != ENOENT) fail(front.path, "unlink", errno);
    segments_.pop_front();
    ++list_generation_;
  }
}

void ReplicationLog::sync_all() const {
  for (const auto& seg : segments_) {
    if (seg->file) {
      if (fdatasync(seg->file->fd) != 0) fail(seg->path, "fdatasync", errno);
      continue;
    }
    int fd = open(seg->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(seg->path, "open", errno);
    int rc = fdatasync(fd);
    int err = errno;
    close(fd);
    if (rc != 0) fail(seg->path, "fdatasync", err);
  }
}

uint64_t ReplicationLog::bytes_on_disk() const {
  uint64_t total = 0;
  for (const auto& seg : segments_) total += seg->size;
  return total;
}

}  // namespace psync::backlog
