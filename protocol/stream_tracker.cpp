#include "protocol/stream_tracker.h"

#include <vector>

#include "protocol/aligner.h"
#include "protocol/text.h"

namespace psync::protocol {

std::string select_command(int64_t db) {
  const std::string n = std::to_string(db);
  return "*2\r\n$6\r\nSELECT\r\n$" + std::to_string(n.size()) + "\r\n" + n + "\r\n";
}

void MemoryHeld::push(int64_t db, std::string_view bytes) {
  q_.push_back(HeldCommand{db, std::string(bytes)});
  bytes_ += bytes.size();
}

void MemoryHeld::pop() {
  bytes_ -= q_.front().bytes.size();
  q_.pop_front();
}

void MemoryHeld::for_each(const std::function<void(const HeldCommand&)>& f) {
  for (const HeldCommand& c : q_) f(c);
}

void MemoryHeld::clear() {
  q_.clear();
  bytes_ = 0;
}

StreamTracker::StreamTracker(uint64_t max_held, std::unique_ptr<HeldCommands> ahead,
                             std::unique_ptr<HeldCommands> behind)
    : max_held_(max_held),
      ahead_(ahead ? std::move(ahead) : std::make_unique<MemoryHeld>()),
      behind_(behind ? std::move(behind) : std::make_unique<MemoryHeld>()) {}

bool StreamTracker::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  ahead_->clear();
  behind_->clear();
  live_partial_.clear();
  own_partial_.clear();
  return false;
}

bool StreamTracker::feed_live(std::string_view bytes, bool at_boundary) { return feed(bytes, at_boundary, true); }

bool StreamTracker::feed_own(std::string_view bytes, bool at_boundary) { return feed(bytes, at_boundary, false); }

bool StreamTracker::feed(std::string_view bytes, bool at_boundary, bool live) {
  if (failed()) return false;
  std::string& partial = live ? live_partial_ : own_partial_;
  if (!at_boundary) {
    if (partial.size() + bytes.size() > max_held_) {
      return fail(std::string("a command of more than ") + std::to_string(max_held_) + " bytes on the " +
                  (live ? "live stream" : "own link"));
    }
    partial.append(bytes);
    return true;
  }
  std::string whole;
  std::string_view in = bytes;
  if (!partial.empty()) {
    whole = std::move(partial);
    whole.append(bytes);
    partial.clear();
    in = whole;
  }
  int64_t& db = live ? live_db_ : own_db_;
  std::vector<StreamCommand> cmds;
  std::string error;
  if (!split_commands(in, 1, db, cmds, error)) {
    return fail(std::string("the ") + (live ? "live stream" : "own link") + " cannot be split into commands: " + error);
  }
  HeldCommands& mine = live ? *behind_ : *ahead_;
  HeldCommands& theirs = live ? *ahead_ : *behind_;
  try {
    for (const StreamCommand& c : cmds) {
      if (live) ++live_commands_;
      if (!theirs.empty()) {
        const Command& first = theirs.front();
        if (first.db != c.db || first.bytes != c.bytes) {
          return fail("live command " + std::to_string(live_commands_) + " differs: " + (live ? "live " : "own ") +
                      quoted(c.bytes.substr(0, 60)) + " in db " + std::to_string(c.db) + ", " +
                      (live ? "own " : "live ") + quoted(std::string_view(first.bytes).substr(0, 60)) + " in db " +
                      std::to_string(first.db));
        }
        theirs.pop();
        ++matched_;
        continue;
      }
      mine.push(c.db, c.bytes);
      if (mine.bytes() > max_held_) {
        return fail(std::string("the ") + (live ? "live stream" : "own link") + " is more than " +
                    std::to_string(max_held_) + " bytes ahead of the other");
      }
    }
  } catch (const std::exception& e) {
    return fail(std::string("cannot hold the commands: ") + e.what());
  }
  return true;
}

bool StreamTracker::splice(const std::function<void(std::string_view)>& out) {
  if (failed() || !behind_->empty()) return false;
  int64_t db = live_db_;
  try {
    ahead_->for_each([&](const Command& c) {
      if (c.db != db) {
        out(select_command(c.db));
        db = c.db;
      }
      out(c.bytes);
    });
  } catch (const std::exception& e) {
    fail(std::string("cannot read the held commands back: ") + e.what());
    return false;
  }
  if (own_db_ != db) out(select_command(own_db_));
  return true;
}

std::string StreamTracker::splice() {
  std::string all;
  splice([&all](std::string_view piece) { all.append(piece); });
  return all;
}

}  // namespace psync::protocol
