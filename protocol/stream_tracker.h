// The stream tracker: keeps two streams of one master aligned, command by
// command, once the Aligner has placed one in the other. Pure.
//
// A standby proxy (proxy/standby.h) receives the master's commands twice:
// relayed by the active (the "live" stream, its log) and on a master link of
// its own (the "own" stream). After the Aligner verified that both are at the
// same command (right after the same marker, where both run in db 0), every
// command that follows is the same on both, in the same db, in the same
// order; only SELECTs (each link gets its own) and PINGs (each link its own)
// differ, and are dropped as in protocol/aligner.h. So at any moment one
// stream is ahead of the other by a run of commands, which is all that is
// kept:
//
//   ahead()  the own link's commands the live stream has not delivered yet
//            (what a takeover appends after the live stream's last byte);
//   behind   live commands the own link has not delivered yet (normally the
//            few that were in flight; a takeover waits until it is empty).
//
// Each command that arrives on one side while the other side is ahead is
// compared with the first held one: the same (db, bytes) drops both; another
// one means the two are not the same stream after all (a missed byte, a
// guessed alignment): the tracker fails for good, with the reason, and
// nothing it holds may be used. What is held is bounded: more than max_held
// bytes held on either side fails it too. Where it is held is the caller's
// choice (HeldCommands): in memory here, or in memory and then a file
// (backlog/spill_queue.h), so that a side far ahead costs disk, not memory.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace psync::protocol {

struct HeldCommand {
  int64_t db = 0;
  std::string bytes;  // its RESP multibulk encoding
};

// A FIFO of the commands one side holds. push() and front() may throw
// std::runtime_error (a file that cannot be written or read back).
class HeldCommands {
 public:
  virtual ~HeldCommands() = default;
  virtual void push(int64_t db, std::string_view bytes) = 0;
  virtual bool empty() const = 0;
  virtual uint64_t size() const = 0;   // commands
  virtual uint64_t bytes() const = 0;  // their bytes
  virtual const HeldCommand& front() = 0;
  virtual void pop() = 0;
  // Every command, oldest first.
  virtual void for_each(const std::function<void(const HeldCommand&)>& f) = 0;
  virtual void clear() = 0;
};

// HeldCommands in memory.
class MemoryHeld : public HeldCommands {
 public:
  void push(int64_t db, std::string_view bytes) override;
  bool empty() const override { return q_.empty(); }
  uint64_t size() const override { return q_.size(); }
  uint64_t bytes() const override { return bytes_; }
  const HeldCommand& front() override { return q_.front(); }
  void pop() override;
  void for_each(const std::function<void(const HeldCommand&)>& f) override;
  void clear() override;

 private:
  std::deque<HeldCommand> q_;
  uint64_t bytes_ = 0;
};

class StreamTracker {
 public:
  using Command = HeldCommand;

  // Both streams start right after the same command, in db 0. ahead and
  // behind: where each side's commands are held (in memory when null).
  explicit StreamTracker(uint64_t max_held = 64ull << 20, std::unique_ptr<HeldCommands> ahead = nullptr,
                         std::unique_ptr<HeldCommands> behind = nullptr);

  // Normalized stream bytes (RESP multibulk, as the proxy logs them and as
  // protocol::LegacyStream delivers them), in pieces: at_boundary says the
  // piece ends at the end of a command. Returns false once failed.
  bool feed_live(std::string_view bytes, bool at_boundary);
  bool feed_own(std::string_view bytes, bool at_boundary);

  // The live stream's link was lost mid-command: the store took that
  // command's first bytes back, and a resumed link sends it again whole.
  void drop_live_partial() { live_partial_.clear(); }

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }

  // The own link's commands past the live stream's end.
  uint64_t ahead() const { return ahead_->size(); }
  uint64_t ahead_bytes() const { return ahead_->bytes(); }
  // Live commands not yet seen on the own link.
  uint64_t behind() const { return behind_->size(); }
  // The db in effect at the end of each stream's whole commands.
  int64_t live_db() const { return live_db_; }
  int64_t own_db() const { return own_db_; }
  // Bytes of a command the own link delivered in part (after its whole
  // commands: the SELECTs and the start of the next command).
  const std::string& own_partial() const { return own_partial_; }
  // Commands matched on both sides so far.
  uint64_t matched() const { return matched_; }

  // The bytes a takeover appends to the live stream so that it goes on as
  // the own link: the commands ahead, oldest first, with a SELECT before each
  // change of db (from live_db()), then a SELECT to own_db() if the own
  // link's db differs from the last one written; given to `out` in pieces.
  // Only when behind() == 0 and not failed (else nothing); false when what
  // is held cannot be read back (error() says why).
  bool splice(const std::function<void(std::string_view)>& out);
  // The same, as one string (tests).
  std::string splice();

 private:
  bool feed(std::string_view bytes, bool at_boundary, bool live);
  bool fail(std::string why);

  uint64_t max_held_;
  std::unique_ptr<HeldCommands> ahead_;
  std::unique_ptr<HeldCommands> behind_;
  std::string live_partial_;
  std::string own_partial_;
  int64_t live_db_ = 0;
  int64_t own_db_ = 0;
  uint64_t matched_ = 0;
  uint64_t live_commands_ = 0;
  std::string error_;
};

// The multibulk SELECT <db>.
std::string select_command(int64_t db);

}  // namespace psync::protocol
