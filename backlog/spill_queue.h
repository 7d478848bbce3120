// A FIFO of held commands that keeps the first ones in memory and the rest in
// a file (protocol::HeldCommands): what a standby's own master link delivers
// ahead of the active (proxy/standby.h) is normally a few commands, but a
// stalled active lets it grow at the master's write rate for as long as the
// takeover takes; that costs disk here, never more than memory_bytes of
// memory.
//
// The file is created in dir and unlinked at once (nothing to clean up after
// a crash); records are [db: int64][length: uint32][bytes], appended at the
// end and read back from the front. Once every record written was read back
// the file is emptied. Order is kept: once one record is in the file, later
// ones go there too until it drains. Errors throw backlog::LogError.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "protocol/stream_tracker.h"

namespace psync::backlog {

class SpillQueue : public protocol::HeldCommands {
 public:
  SpillQueue(std::string dir, uint64_t memory_bytes);
  ~SpillQueue() override;
  SpillQueue(const SpillQueue&) = delete;
  SpillQueue& operator=(const SpillQueue&) = delete;

  void push(int64_t db, std::string_view bytes) override;
  bool empty() const override { return count_ == 0; }
  uint64_t size() const override { return count_; }
  uint64_t bytes() const override { return bytes_; }
  const protocol::HeldCommand& front() override;
  void pop() override;
  void for_each(const std::function<void(const protocol::HeldCommand&)>& f) override;
  void clear() override;

  // Bytes in the file now (written and not read back), for tests.
  uint64_t spilled_bytes() const { return file_end_ - file_read_; }

 private:
  void open_file();
  // Moves records from the file into memory, up to memory_bytes.
  void refill();
  // Reads the record at file offset `at`; returns the offset after it.
  uint64_t read_record(uint64_t at, protocol::HeldCommand& out) const;

  std::string dir_;
  uint64_t memory_bytes_;
  int fd_ = -1;
  std::deque<protocol::HeldCommand> memory_;
  uint64_t memory_used_ = 0;
  uint64_t file_read_ = 0;  // offset of the first record not read back
  uint64_t file_end_ = 0;   // offset past the last record written
  uint64_t file_count_ = 0;
  uint64_t count_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace psync::backlog
