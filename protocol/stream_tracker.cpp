#include "protocol/stream_tracker.h"

#include <vector>

#include "protocol/aligner.h"
#include "protocol/text.h"

namespace psync::protocol {

std::string select_command(int64_t db) {
  const std::string n = std::to_string(db);
  return "*2\r\n$6\r\nSELECT\r\n$" + std::to_string(n.size()) + "\r\n" + n + "\r\n";
}

StreamTracker::StreamTracker(uint64_t max_held) : max_held_(max_held) {}

bool StreamTracker::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  ahead_.clear();
  behind_.clear();
  ahead_bytes_ = behind_bytes_ = 0;
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
  std::deque<Command>& mine = live ? behind_ : ahead_;
  std::deque<Command>& theirs = live ? ahead_ : behind_;
  uint64_t& mine_bytes = live ? behind_bytes_ : ahead_bytes_;
  uint64_t& theirs_bytes = live ? ahead_bytes_ : behind_bytes_;
  for (const StreamCommand& c : cmds) {
    if (live) ++live_commands_;
    if (!theirs.empty()) {
      const Command& first = theirs.front();
      if (first.db != c.db || first.bytes != c.bytes) {
        return fail("live command " + std::to_string(live_commands_) + " differs: " +
                    (live ? "live " : "own ") + quoted(c.bytes.substr(0, 60)) + " in db " + std::to_string(c.db) +
                    ", " + (live ? "own " : "live ") + quoted(std::string_view(first.bytes).substr(0, 60)) +
                    " in db " + std::to_string(first.db));
      }
      theirs_bytes -= first.bytes.size();
      theirs.pop_front();
      ++matched_;
      continue;
    }
    mine.push_back(Command{c.db, std::string(c.bytes)});
    mine_bytes += c.bytes.size();
    if (mine_bytes > max_held_) {
      return fail(std::string("the ") + (live ? "live stream" : "own link") + " is more than " +
                  std::to_string(max_held_) + " bytes ahead of the other");
    }
  }
  return true;
}

std::string StreamTracker::splice() const {
  std::string out;
  if (failed() || !behind_.empty()) return out;
  int64_t db = live_db_;
  for (const Command& c : ahead_) {
    if (c.db != db) {
      out += select_command(c.db);
      db = c.db;
    }
    out += c.bytes;
  }
  if (own_db_ != db) out += select_command(own_db_);
  return out;
}

}  // namespace psync::protocol
