// The spill queue: a standby's held commands, a few in memory and the rest in an unlinked
// file, in order, whatever the mix of pushes and pops.
#include <doctest/doctest.h>

#include <dirent.h>

#include <deque>
#include <string>

#include "backlog/replication_log.h"
#include "backlog/spill_queue.h"
#include "protocol/stream_tracker.h"
#include "tests/unit/backlog_fixtures.h"

using psync::backlog::LogError;
using psync::backlog::SpillQueue;
using psync::protocol::HeldCommand;

namespace {

size_t files_in(const std::string& dir) {
  size_t n = 0;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

}  // namespace

TEST_CASE("spill queue: past its memory share commands go to a file, and come back in order") {
  backlog_test::TempDir dir;
  SpillQueue q(dir.path, 100);
  std::deque<HeldCommand> model;
  uint64_t next = 0;
  auto push = [&](size_t n) {
    for (size_t i = 0; i < n; ++i, ++next) {
      std::string bytes = "cmd-" + std::to_string(next) + std::string(next % 17, 'x');
      const int64_t db = static_cast<int64_t>(next % 5);
      q.push(db, bytes);
      model.push_back({db, bytes});
    }
  };
  auto pop = [&](size_t n) {
    for (size_t i = 0; i < n && !model.empty(); ++i) {
      REQUIRE_FALSE(q.empty());
      CHECK(q.front().bytes == model.front().bytes);
      CHECK(q.front().db == model.front().db);
      q.pop();
      model.pop_front();
    }
  };
  push(50);
  CHECK(q.size() == 50);
  CHECK(q.spilled_bytes() > 0);  // 50 commands of ~14 bytes are more than 100 bytes
  CHECK(files_in(dir.path) == 0);  // the file is unlinked at once
  // for_each sees every one, oldest first.
  size_t i = 0;
  bool in_order = true;
  q.for_each([&](const HeldCommand& c) { in_order = in_order && c.bytes == model[i++].bytes; });
  CHECK(i == 50);
  CHECK(in_order);
  pop(20);
  push(30);  // while the file still holds some: after them
  pop(35);
  push(5);
  pop(1000);
  CHECK(q.empty());
  CHECK(q.bytes() == 0);
  CHECK(q.spilled_bytes() == 0);  // drained: the file starts over
  push(3);
  q.clear();
  CHECK(q.empty());
  CHECK(q.size() == 0);
}

TEST_CASE("spill queue: a directory it cannot write in is a clear error") {
  SpillQueue q("/nonexistent-psync-dir", 0);
  CHECK_THROWS_AS(q.push(0, "x"), LogError);
}
