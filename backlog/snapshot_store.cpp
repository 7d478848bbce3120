#include "backlog/snapshot_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace psync::backlog {

namespace {

[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw LogError(path + ": " + what + ": " + std::strerror(err));
}

// The replid becomes part of a file name.
bool valid_replid(const std::string& replid) {
  if (replid.empty() || replid == "." || replid == "..") return false;
  for (char c : replid) {
    if (c == '/' || c == '\0') return false;
  }
  return true;
}

// Opens dir and fsyncs it, so that a rename in it is durable.
int fsync_dir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return err;
}

bool leftover_name(std::string_view name) {
  return (name.starts_with("snapshot-") && name.ends_with(".rdb")) || name.ends_with(".tmp") ||
         (name.starts_with("log-") && name.ends_with(".seg")) || name == "manifest.json" || name == "commit.rec";
}

}  // namespace

// --- Snapshot ---------------------------------------------------------------

Snapshot::Snapshot(std::string path, int fd, uint64_t size, uint64_t offset, std::string replid,
                   int64_t created_unix, std::string prefix)
    : path_(std::move(path)),
      fd_(fd),
      size_(size),
      offset_(offset),
      replid_(std::move(replid)),
      created_unix_(created_unix),
      prefix_(std::move(prefix)) {}

std::shared_ptr<Snapshot> Snapshot::open(const std::string& path, uint64_t size, uint64_t offset,
                                         std::string replid, int64_t created_unix, std::string prefix) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "open", errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    fail(path, "fstat", err);
  }
  if (static_cast<uint64_t>(st.st_size) != size) {
    close(fd);
    throw LogError(path + ": holds " + std::to_string(st.st_size) + " bytes, the manifest says " + std::to_string(size));
  }
  return std::make_shared<Snapshot>(path, fd, size, offset, std::move(replid), created_unix, std::move(prefix));
}

Snapshot::~Snapshot() {
  if (fd_ >= 0) close(fd_);
}

void Snapshot::discard() {
  // Only unlink the path if it is still our file: a newer snapshot of the
  // same replid may have been renamed over it.
  struct stat ours, on_disk;
  if (fstat(fd_, &ours) != 0 || stat(path_.c_str(), &on_disk) != 0) return;
  if (ours.st_dev != on_disk.st_dev || ours.st_ino != on_disk.st_ino) return;
  unlink(path_.c_str());
}

// --- SnapshotWriter ---------------------------------------------------------

SnapshotWriter::SnapshotWriter(const std::string& dir, const std::string& tag)
    : dir_(dir), tmp_path_(dir + (tag.empty() ? "/snapshot.rdb.tmp" : "/snapshot-" + tag + ".rdb.tmp")) {
  fd_ = open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) fail(tmp_path_, "open", errno);
  // A stale temp file keeps its old mode through O_TRUNC.
  if (fchmod(fd_, 0600) != 0) {
    int err = errno;
    abort();
    fail(tmp_path_, "fchmod", err);
  }
}

SnapshotWriter::~SnapshotWriter() { abort(); }

void SnapshotWriter::write(std::string_view bytes) {
  if (done_) throw std::logic_error("SnapshotWriter::write after commit or abort");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(tmp_path_, "write", errno);
    if (n == 0) fail(tmp_path_, "write", EIO);
    done += static_cast<size_t>(n);
    bytes_ += static_cast<uint64_t>(n);
  }
}

std::shared_ptr<Snapshot> SnapshotWriter::commit(const std::string& replid, uint64_t offset,
                                                 const std::string& prefix) {
  if (done_) throw std::logic_error("SnapshotWriter::commit after commit or abort");

  // Any failure before the rename: remove the temp file (abort) and throw.
  auto fail_tmp = [this](const std::string& path, const char* what, int err) {
    abort();
    fail(path, what, err);
  };
  if (!valid_replid(replid)) fail_tmp(tmp_path_, "commit: invalid replid", EINVAL);
  if (prefix.size() > offset) fail_tmp(tmp_path_, "commit: prefix longer than the offset", EINVAL);
  if (fsync(fd_) != 0) fail_tmp(tmp_path_, "fsync", errno);
  int fd = fd_;
  fd_ = -1;
  if (close(fd) != 0) fail_tmp(tmp_path_, "close", errno);

  // A snapshot within a lineage (a prefix) gets its offset in the name: it
  // never replaces the file the manifest names until the manifest names it.
  std::string final_path = dir_ + "/snapshot-" + replid +
                           (prefix.empty() ? std::string() : "-" + std::to_string(offset)) + ".rdb";
  if (rename(tmp_path_.c_str(), final_path.c_str()) != 0) {
    fail_tmp(tmp_path_ + " -> " + final_path, "rename", errno);
  }

  // After the rename the temp file is gone; a failure now removes the
  // renamed file instead, so that no snapshot exists when commit throws.
  done_ = true;
  auto fail_final = [&final_path](const std::string& path, const char* what, int err) {
    unlink(final_path.c_str());
    fail(path, what, err);
  };
  if (int err = fsync_dir(dir_); err != 0) fail_final(dir_, "fsync directory", err);
  int rfd = open(final_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd < 0) fail_final(final_path, "open", errno);
  return std::make_shared<Snapshot>(final_path, rfd, bytes_, offset, replid,
                                    static_cast<int64_t>(time(nullptr)), prefix);
}

void SnapshotWriter::abort() {
  if (done_) return;
  done_ = true;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  unlink(tmp_path_.c_str());
}

// --- clean_data_dir ---------------------------------------------------------

size_t clean_data_dir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) fail(dir, "opendir", errno);
  size_t removed = 0;
  int err = 0;
  std::string failed;
  while (dirent* entry = readdir(d)) {
    if (!leftover_name(entry->d_name)) continue;
    struct stat st;
    if (fstatat(dirfd(d), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) continue;
    if (unlinkat(dirfd(d), entry->d_name, 0) == 0) {
      ++removed;
    } else if (errno != ENOENT && err == 0) {
      err = errno;
      failed = dir + "/" + entry->d_name;
    }
  }
  closedir(d);
  if (err != 0) fail(failed, "unlink", err);
  return removed;
}

}  // namespace psync::backlog
