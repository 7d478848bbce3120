// The stream tracker: two streams of one master, kept aligned command by command after the
// Aligner placed them; what a standby's takeover appends.
#include <doctest/doctest.h>

#include <string>

#include "protocol/stream_tracker.h"

using psync::protocol::select_command;
using psync::protocol::StreamTracker;

namespace {

std::string cmd(const std::string& a, const std::string& b = "", const std::string& c = "") {
  std::string out;
  int n = 1 + !b.empty() + !c.empty();
  out += "*" + std::to_string(n) + "\r\n";
  for (const std::string* s : {&a, &b, &c}) {
    if (s != &a && s->empty()) continue;
    out += "$" + std::to_string(s->size()) + "\r\n" + *s + "\r\n";
  }
  return out;
}

const std::string kPing = "*1\r\n$4\r\nPING\r\n";

}  // namespace

TEST_CASE("stream tracker: the own link ahead: its extra commands are what a takeover appends, with SELECTs") {
  StreamTracker t;
  // Live: SET a in db 0, then (its own SELECT) db 5 SET b; a PING of the active in between.
  CHECK(t.feed_live(cmd("SET", "a", "1") + kPing + select_command(5) + cmd("SET", "b", "2"), true));
  CHECK(t.behind() == 2);
  // Own: the same two, then two more: one in db 5, one in db 1, its SELECTs placed elsewhere.
  CHECK(t.feed_own(cmd("SET", "a", "1") + select_command(5), true));
  CHECK(t.behind() == 1);
  CHECK(t.feed_own(cmd("SET", "b", "2") + cmd("INCR", "c") + select_command(1) + cmd("DEL", "d"), true));
  CHECK(t.behind() == 0);
  CHECK(t.matched() == 2);
  REQUIRE(t.ahead() == 2);
  // Live is in db 5: INCR needs no SELECT, DEL needs SELECT 1; own ends in db 1 already.
  CHECK(t.splice() == cmd("INCR", "c") + select_command(1) + cmd("DEL", "d"));
  // The live stream catches up with one of them: it is dropped from what is ahead.
  CHECK(t.feed_live(cmd("INCR", "c"), true));
  REQUIRE(t.ahead() == 1);
  CHECK(t.splice() == select_command(1) + cmd("DEL", "d"));
}

TEST_CASE("stream tracker: a SELECT the own link sent last, with no command after it yet, is in the splice") {
  StreamTracker t;
  CHECK(t.feed_live(cmd("SET", "a", "1"), true));
  CHECK(t.feed_own(cmd("SET", "a", "1") + select_command(3), true));
  CHECK(t.ahead() == 0);
  CHECK(t.own_db() == 3);
  CHECK(t.splice() == select_command(3));
  // Its next command then arrives without a SELECT: appended after the splice it runs in db 3.
}

TEST_CASE("stream tracker: commands in pieces are compared once whole; a partial one of the own link is kept") {
  StreamTracker t;
  const std::string big = cmd("SET", "k", std::string(1000, 'x'));
  CHECK(t.feed_live(big.substr(0, 300), false));
  CHECK(t.feed_live(big.substr(300), true));
  CHECK(t.behind() == 1);
  CHECK(t.feed_own(big.substr(0, 10), false));
  CHECK(t.behind() == 1);
  CHECK(t.feed_own(big.substr(10), true));
  CHECK(t.behind() == 0);
  CHECK(t.feed_own(big.substr(0, 50), false));
  CHECK(t.own_partial() == big.substr(0, 50));
  CHECK(t.splice().empty());
}

TEST_CASE("stream tracker: a differing command, or another db, fails it for good; nothing is spliced then") {
  SUBCASE("other bytes") {
    StreamTracker t;
    CHECK(t.feed_live(cmd("SET", "a", "1"), true));
    CHECK_FALSE(t.feed_own(cmd("SET", "a", "2"), true));
    CHECK(t.failed());
    CHECK(t.error().find("differs") != std::string::npos);
  }
  SUBCASE("the same bytes in another db") {
    StreamTracker t;
    CHECK(t.feed_own(select_command(2) + cmd("SET", "a", "1"), true));
    CHECK_FALSE(t.feed_live(cmd("SET", "a", "1"), true));
    CHECK(t.error().find("db") != std::string::npos);
  }
  SUBCASE("not RESP") {
    StreamTracker t;
    CHECK_FALSE(t.feed_own("hello\r\n", true));
  }
  StreamTracker t;
  CHECK_FALSE(t.feed_own("*1\r\n$3\r\nfoo\r\n*x\r\n", true));
  CHECK_FALSE(t.feed_live(cmd("SET", "a", "1"), true));  // stays failed
  CHECK(t.splice().empty());
  CHECK(t.ahead() == 0);
}

TEST_CASE("stream tracker: memory is bounded: a side more than max_held ahead fails it") {
  StreamTracker t(1000);
  std::string many;
  for (int i = 0; i < 100; ++i) many += cmd("SET", "k" + std::to_string(i), "v");
  CHECK_FALSE(t.feed_own(many, true));
  CHECK(t.error().find("ahead") != std::string::npos);
  StreamTracker u(1000);
  CHECK_FALSE(u.feed_live(std::string(2000, 'x'), false));
}

TEST_CASE("stream tracker: behind, a splice is refused until the own link caught up") {
  StreamTracker t;
  CHECK(t.feed_live(cmd("SET", "a", "1") + cmd("SET", "b", "1"), true));
  CHECK(t.feed_own(cmd("SET", "a", "1"), true));
  CHECK(t.behind() == 1);
  CHECK(t.splice().empty());
  CHECK(t.feed_own(cmd("SET", "b", "1") + cmd("SET", "c", "1"), true));
  CHECK(t.splice() == cmd("SET", "c", "1"));
}

TEST_CASE("stream tracker: the live link lost mid-command: its start is dropped, the command comes again whole") {
  StreamTracker t;
  const std::string big = cmd("SET", "k", std::string(100, 'x'));
  CHECK(t.feed_own(big, true));
  CHECK(t.feed_live(big.substr(0, 40), false));
  t.drop_live_partial();  // the store rolled those bytes back
  CHECK(t.feed_live(big, true));  // the resumed link sends it from its first byte
  CHECK_FALSE(t.failed());
  CHECK(t.ahead() == 0);
  CHECK(t.behind() == 0);
  CHECK(t.matched() == 1);
}
