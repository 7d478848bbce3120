#include "backlog/spill_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "backlog/replication_log.h"  // LogError

namespace psync::backlog {

namespace {
constexpr size_t kHeader = sizeof(int64_t) + sizeof(uint32_t);

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }
}  // namespace

SpillQueue::SpillQueue(std::string dir, uint64_t memory_bytes) : dir_(std::move(dir)), memory_bytes_(memory_bytes) {}

SpillQueue::~SpillQueue() {
  if (fd_ >= 0) ::close(fd_);
}

void SpillQueue::open_file() {
  std::string path = dir_ + "/standby-held-XXXXXX";
  fd_ = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd_ < 0) throw LogError(errno_text("cannot create " + path));
  ::unlink(path.c_str());  // only this descriptor names it
}

void SpillQueue::push(int64_t db, std::string_view bytes) {
  if (bytes.size() > UINT32_MAX) throw LogError("a command of more than 4 GB");
  if (file_count_ == 0 && memory_used_ + bytes.size() <= memory_bytes_) {
    memory_.push_back(protocol::HeldCommand{db, std::string(bytes)});
    memory_used_ += bytes.size();
  } else {
    if (fd_ < 0) open_file();
    char header[kHeader];
    const uint32_t len = static_cast<uint32_t>(bytes.size());
    std::memcpy(header, &db, sizeof db);
    std::memcpy(header + sizeof db, &len, sizeof len);
    std::string record(header, kHeader);
    record.append(bytes);
    size_t done = 0;
    while (done < record.size()) {
      ssize_t n = ::pwrite(fd_, record.data() + done, record.size() - done, static_cast<off_t>(file_end_ + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw LogError(errno_text("cannot write the held commands to " + dir_));
      done += static_cast<size_t>(n);
    }
    file_end_ += record.size();
    ++file_count_;
  }
  ++count_;
  bytes_ += bytes.size();
}

uint64_t SpillQueue::read_record(uint64_t at, protocol::HeldCommand& out) const {
  char header[kHeader];
  auto read_exact = [this](char* buf, size_t len, uint64_t from) {
    size_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd_, buf + done, len - done, static_cast<off_t>(from + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw LogError(n == 0 ? std::string("the held commands' file ended early")
                                        : errno_text("cannot read the held commands back"));
      done += static_cast<size_t>(n);
    }
  };
  read_exact(header, kHeader, at);
  uint32_t len = 0;
  std::memcpy(&out.db, header, sizeof out.db);
  std::memcpy(&len, header + sizeof out.db, sizeof len);
  out.bytes.resize(len);
  read_exact(out.bytes.data(), len, at + kHeader);
  return at + kHeader + len;
}

void SpillQueue::refill() {
  while (file_count_ > 0 && (memory_.empty() || memory_used_ < memory_bytes_)) {
    protocol::HeldCommand c;
    file_read_ = read_record(file_read_, c);
    --file_count_;
    memory_used_ += c.bytes.size();
    memory_.push_back(std::move(c));
  }
  if (file_count_ == 0 && fd_ >= 0) {
    // All read back: the file starts over.
    if (::ftruncate(fd_, 0) != 0) throw LogError(errno_text("cannot empty the held commands' file"));
    file_read_ = file_end_ = 0;
  }
}

const protocol::HeldCommand& SpillQueue::front() {
  if (memory_.empty()) refill();
  return memory_.front();
}

void SpillQueue::pop() {
  if (memory_.empty()) refill();
  memory_used_ -= memory_.front().bytes.size();
  bytes_ -= memory_.front().bytes.size();
  memory_.pop_front();
  --count_;
}

void SpillQueue::for_each(const std::function<void(const protocol::HeldCommand&)>& f) {
  for (const auto& c : memory_) f(c);
  uint64_t at = file_read_;
  protocol::HeldCommand c;
  for (uint64_t i = 0; i < file_count_; ++i) {
    at = read_record(at, c);
    f(c);
  }
}

void SpillQueue::clear() {
  memory_.clear();
  memory_used_ = 0;
  if (fd_ >= 0 && file_end_ > 0 && ::ftruncate(fd_, 0) != 0) {
    // Harmless: the positions start over and the file is overwritten.
  }
  file_read_ = file_end_ = 0;
  file_count_ = 0;
  count_ = 0;
  bytes_ = 0;
}

}  // namespace psync::backlog
