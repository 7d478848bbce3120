// Tests of the Aligner (protocol/aligner.h): where a second SYNC link's
// snapshot lies in the live stream. A wrong offset or db would give replicas
// served that snapshot wrong data, so every success is checked against the
// known fork position AND by replaying what such a replica would be served
// (`SELECT <db>`, then the live log from X+1): it must run exactly the
// master's commands after the fork, each in its db.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "protocol/aligner.h"
#include "protocol/text.h"

using psync::protocol::align;
using psync::protocol::AlignError;
using psync::protocol::Alignment;
using psync::protocol::is_marker;
using psync::protocol::marker_nonce;
using psync::protocol::quoted;
using psync::protocol::split_commands;
using psync::protocol::StreamCommand;

namespace {

const std::string kChannel = "__psync_proxy__";

// A RESP multibulk command, encoded here independently of protocol/reply.h.
std::string mb(const std::vector<std::string>& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

std::string nonce(int k) { return "7f3a9c-" + std::to_string(k); }
std::string marker(int k) { return mb({"PUBLISH", kChannel, nonce(k)}); }
std::string select_cmd(int64_t db) { return mb({"SELECT", std::to_string(db)}); }
const std::string kPing = mb({"PING"});

// One command the master propagated, in the db it ran in.
struct Cmd {
  int64_t db = 0;
  std::string bytes;
};

// The master's history around two markers: some commands, marker k-1, the
// window (through marker k), some more. fork_ok[i]: a fork may fall right
// before cmds[i] (not between a MULTI and its EXEC).
struct History {
  std::vector<Cmd> cmds;
  std::vector<bool> fork_ok;
  size_t prev = 0;  // index of marker k-1
  size_t mark = 0;  // index of marker k
  int k = 0;
};

// Writes in dbs 0, 1, 5, 7; values that look like protocol; repeated
// identical commands (INCR counter) unless `distinct`; MULTI/EXEC blocks.
struct Gen {
  std::mt19937 rng;
  bool distinct = false;
  bool blocks = true;
  uint64_t seq = 0;
  int64_t db = 0;

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); }
  bool chance(int percent) { return static_cast<int>(pick(100)) < percent; }
  std::string tag() { return std::to_string(seq++); }
  std::string value() {
    switch (pick(7)) {
      case 0: return "";
      case 1: return std::string("\r\n*1\r\n$4\r\nPING\r\n\0\xff", 18);
      case 2: return "PING";
      case 3: return std::string(200 + pick(200), 'v');
      case 4: return mb({"PUBLISH", kChannel, nonce(1)});  // a marker's bytes as a value: not a marker
      default: return "v" + tag();
    }
  }
  Cmd write() {
    const std::string t = distinct ? tag() : "";
    switch (pick(6)) {
      case 0: return {db, mb({"INCR", "counter" + t})};
      case 1: return {db, mb({"LPUSH", "list" + tag(), value(), value()})};
      case 2: return {db, mb({"DEL", "k" + tag()})};
      case 3: return {db, mb({"PUBLISH", chance(50) ? "news" + t : kChannel + "x" + t, value()})};
      default: return {db, mb({"SET", "k" + tag(), value()})};
    }
  }
  void add(History& h, Cmd c, bool fork_ok = true) {
    h.cmds.push_back(std::move(c));
    h.fork_ok.push_back(fork_ok);
  }
  // One write, or a MULTI/EXEC block, in the current db (which may change first).
  void step(History& h) {
    if (chance(35)) db = std::vector<int64_t>{0, 1, 5, 7}[pick(4)];
    if (blocks && chance(15)) {
      add(h, {db, mb({"MULTI"})});
      for (size_t n = 1 + pick(3); n > 0; --n) add(h, write(), false);
      add(h, {db, mb({"EXEC"})}, false);
      return;
    }
    add(h, write());
  }
  void add_marker(History& h, int k) {
    db = 0;  // the marker client's db
    add(h, {0, marker(k)});
  }
};

History make_history(uint32_t seed, size_t window, bool distinct = false) {
  Gen g{std::mt19937(seed), distinct};
  History h;
  h.k = 2 + static_cast<int>(seed % 7);
  for (size_t n = g.pick(6); n > 0; --n) g.step(h);
  h.prev = h.cmds.size();
  g.add_marker(h, h.k - 1);
  while (h.cmds.size() < h.prev + 1 + window) g.step(h);
  h.mark = h.cmds.size();
  g.add_marker(h, h.k);
  for (size_t n = g.pick(5); n > 0; --n) g.step(h);
  if (g.chance(50)) g.add_marker(h, h.k + 1);
  return h;
}

// What one replica link carries, normalized as the proxy logs it. The master
// sends SELECT before a command whose db is not the one it believes the link
// is in (master_db); replica_db is the db the link is really in, as a replica
// parsing it tracks it. The two differ only after a copied output buffer.
struct Link {
  uint64_t first = 1;  // offset of bytes[0]
  int64_t master_db = 0;
  int64_t replica_db = 0;
  std::string bytes;
  std::vector<uint64_t> ends;       // end offset of each command sent
  std::vector<int64_t> parsed_dbs;  // replica_db each command ran in on this link

  uint64_t end() const { return first + bytes.size() - 1; }
  void send(const Cmd& c) {
    if (c.db != master_db) {
      bytes += select_cmd(c.db);
      master_db = replica_db = c.db;
    }
    bytes += c.bytes;
    ends.push_back(end());
    parsed_dbs.push_back(replica_db);
  }
};

// The live log: the proxy's PINGs at random command boundaries (between a
// SELECT and its command too).
Link live_link(const History& h, uint32_t seed, uint64_t first) {
  std::mt19937 rng(seed ^ 0x5eed);
  Link l;
  l.first = first;
  for (const Cmd& c : h.cmds) {
    if (rng() % 4 == 0) l.bytes += kPing;
    if (c.db != l.master_db && rng() % 3 == 0) {
      l.bytes += select_cmd(c.db);
      l.master_db = l.replica_db = c.db;
      if (rng() % 2 == 0) l.bytes += kPing;
    }
    l.send(c);
  }
  return l;
}

// The new link from cmds[from] through cmds[to]: other PINGs, in other
// places and forms. copy_at: the index (into the link's commands) where the
// master stopped using a copied output buffer and started tracking this
// link's db from 0 (its own slaveseldb), whatever the buffer left it in;
// 0 = no copied buffer.
Link fresh_link(const History& h, size_t from, size_t to, uint32_t seed, size_t copy_at = 0) {
  std::mt19937 rng(seed ^ 0xf4e5);
  const std::string pings[] = {kPing, mb({"ping"}), mb({"PiNg", "x"})};
  Link l;
  l.first = 1;
  for (size_t i = from; i <= to; ++i) {
    if (i - from == copy_at) l.master_db = 0;
    if (rng() % 3 == 0) l.bytes += pings[rng() % 3];
    l.send(h.cmds[i]);
  }
  if (rng() % 2 == 0) l.bytes += kPing;
  return l;
}

std::vector<StreamCommand> split_ok(std::string_view bytes, uint64_t first, int64_t db = 0) {
  std::vector<StreamCommand> out;
  std::string error;
  const bool ok = split_commands(bytes, first, db, out, error);
  INFO(error);
  REQUIRE(ok);
  return out;
}

// A live log and its window (after marker k-1 through marker k), split.
struct World {
  History h;
  Link live;
  uint64_t live_start = 0;  // end of marker k-1
  int64_t live_start_db = 0;
  std::vector<StreamCommand> window;

  World(uint32_t seed, size_t window_size, bool distinct = false)
      : h(make_history(seed, window_size, distinct)), live(live_link(h, seed, 1'000'000 + seed * 977)) {
    live_start = live.ends[h.prev];
    live_start_db = live.parsed_dbs[h.prev];
    window = window_from(live_start, live.ends[h.mark]);
  }
  // The live window [from+1, to], split from the db in effect at `from`.
  std::vector<StreamCommand> window_from(uint64_t from, uint64_t to) const {
    return split_ok(slice(from, to), from + 1, db_at(from));
  }
  std::string_view slice(uint64_t from, uint64_t to) const {
    return std::string_view(live.bytes).substr(from + 1 - live.first, to - from);
  }
  // The db in effect at the end of a command (tracked by the generator, not by split_commands).
  int64_t db_at(uint64_t end) const {
    if (end + 1 == live.first) return 0;
    for (size_t i = 0; i < live.ends.size(); ++i)
      if (live.ends[i] == end) return live.parsed_dbs[i];
    FAIL("not the end of a command");
    return -1;
  }
  Alignment align_fresh(const std::vector<StreamCommand>& fresh, int k) const {
    return align(window, live_start, live_start_db, fresh, kChannel, nonce(k));
  }
};

// A replica served the snapshot at a.offset gets `SELECT <a.db>`, then the
// live log from a.offset+1. It must run exactly the master's commands from
// cmds[fork] on, each in the db it ran in on the master; and a.offset must be
// the end of the last command before the fork.
void check_served(const World& w, const Alignment& a, size_t fork) {
  REQUIRE(a.ok);
  CHECK(a.offset == w.live.ends[fork - 1]);
  CHECK(a.db == w.h.cmds[fork - 1].db);
  REQUIRE(a.offset >= w.live.first);
  REQUIRE(a.offset <= w.live.end());
  const std::vector<StreamCommand> served = split_ok(std::string_view(w.live.bytes).substr(a.offset + 1 - w.live.first), a.offset + 1, a.db);
  REQUIRE(served.size() == w.h.cmds.size() - fork);
  for (size_t i = 0; i < served.size(); ++i) {
    CAPTURE(i);
    CHECK(served[i].bytes == w.h.cmds[fork + i].bytes);
    CHECK(served[i].db == w.h.cmds[fork + i].db);
  }
}

// Changes one byte inside an argument of a command, keeping it whole
// multibulk: the last byte of its last argument, or of its name when the
// last argument is empty. The name never becomes PING or SELECT that way.
void change_a_byte(std::string& b) {
  if (b.size() >= 6 && b.compare(b.size() - 6, 6, "$0\r\n\r\n") == 0) {
    b[b.find("\r\n", b.find('$')) + 2] ^= 0x01;
  } else {
    b[b.size() - 3] ^= 0x01;
  }
}

}  // namespace

TEST_CASE("split_commands: commands with their db and end offset, PINGs and SELECTs dropped") {
  const std::string set = mb({"SET", "a", std::string("\r\n*1\r\n$4\r\nPING\r\n", 16)});
  const std::string incr = mb({"INCR", "c"});
  const std::string del = mb({"DEL", "x"});
  const std::string bytes = set + mb({"ping"}) + mb({"select", "7"}) + incr + mb({"PING", "abc"}) +
                            mb({"SELECT", "12"}) + mb({"SELECT", "12"}) + del;
  int64_t db = 3;
  std::vector<StreamCommand> out;
  std::string error;
  REQUIRE(split_commands(bytes, 100, db, out, error));
  CHECK(error.empty());
  REQUIRE(out.size() == 3);
  CHECK(out[0].bytes == set);
  CHECK(out[0].db == 3);
  CHECK(out[0].end == 100 + set.size() - 1);
  CHECK(out[1].bytes == incr);
  CHECK(out[1].db == 7);
  CHECK(out[1].end == 100 + bytes.find(incr) + incr.size() - 1);
  CHECK(out[2].bytes == del);
  CHECK(out[2].db == 12);
  CHECK(out[2].end == 100 + bytes.size() - 1);
  CHECK(db == 12);
  // The views point into the bytes given.
  CHECK(out[2].bytes.data() == bytes.data() + bytes.size() - del.size());

  // Appends; empty bytes are no commands.
  REQUIRE(split_commands("", 5, db, out, error));
  CHECK(out.size() == 3);
  CHECK(db == 12);
}

TEST_CASE("split_commands refuses what is not whole multibulk commands, saying where") {
  struct Bad {
    std::string bytes, error;
  };
  const std::string set = mb({"SET", "a", "b"});  // 27 bytes: the next command starts at offset 1027
  const Bad cases[] = {
      {set + "*1\r\n$4\r\nPIN", "incomplete command at offset 1027"},
      {set + "*1\r\n$4\r\nPING\r", "incomplete command at offset 1027"},
      {set + "*2\r\n", "incomplete command at offset 1027"},
      {set + "*", "incomplete command at offset 1027"},
      {set + "+OK\r\n", "expected '*', got '+' at offset 1027"},
      {set + "PING\r\n", "expected '*', got 'P' at offset 1027"},
      {set + "*0\r\n", "empty multibulk command (*0) at offset 1027"},
      {set + "*-1\r\n", "bad multibulk count line at offset 1027"},
      {set + "*01\r\n$4\r\nPING\r\n", "bad multibulk count line at offset 1027"},
      {set + "*1\n$4\r\nPING\r\n", "bad multibulk count line at offset 1027"},
      {set + "*1\r\n$04\r\nPING\r\n", "bad bulk length line at offset 1031"},
      {set + "*1\r\n$-1\r\n", "bad bulk length line at offset 1031"},
      {set + "*1\r\n$99999999999999999999\r\n", "bad bulk length line at offset 1031"},
      {set + "*1\r\n:4\r\nPING\r\n", "expected '$', got ':' at offset 1031"},
      {set + "*1\r\n$4\r\nPINGxx", "bulk argument not followed by CRLF at offset 1039"},
      {set + mb({"SELECT"}), "SELECT with 0 arguments at offset 1027"},
      {set + mb({"select", "1", "2"}), "SELECT with 2 arguments at offset 1027"},
      {set + mb({"SELECT", "x"}), "SELECT at offset 1027: 'x' is not a db number"},
      {set + mb({"SELECT", "-1"}), "is not a db number"},
      {set + mb({"SELECT", "01"}), "is not a db number"},
      {set + mb({"SELECT", ""}), "is not a db number"},
      {set + mb({"SELECT", " 1"}), "is not a db number"},
      {set + mb({"SELECT", "2147483648"}), "is not a db number"},
  };
  for (const Bad& c : cases) {
    CAPTURE(c.bytes);
    int64_t db = 4;
    std::vector<StreamCommand> out;
    std::string error;
    CHECK_FALSE(split_commands(c.bytes, 1000, db, out, error));
    INFO(error);
    CHECK(error.find(c.error) != std::string::npos);
    // The commands before the bad one were split.
    REQUIRE(out.size() == 1);
    CHECK(out[0].bytes == set);
  }
  // On failure db is the db in effect before the bad command.
  int64_t db = 0;
  std::vector<StreamCommand> out;
  std::string error;
  CHECK_FALSE(split_commands(mb({"SELECT", "2147483647"}) + set + mb({"SELECT", "x"}), 1, db, out, error));
  CHECK(db == 2147483647);
  REQUIRE(out.size() == 1);
  CHECK(out[0].db == 2147483647);
}

TEST_CASE("marker_nonce and is_marker: exactly PUBLISH <channel> <nonce>") {
  CHECK(marker_nonce(marker(3), kChannel) == nonce(3));
  CHECK(is_marker(marker(3), kChannel, nonce(3)));
  CHECK(is_marker(mb({"publish", kChannel, nonce(3)}), kChannel, nonce(3)));
  CHECK_FALSE(is_marker(marker(3), kChannel, nonce(30)));
  CHECK_FALSE(is_marker(marker(30), kChannel, nonce(3)));
  CHECK_FALSE(is_marker(mb({"PUBLISH", "__PSYNC_PROXY__", nonce(3)}), kChannel, nonce(3)));
  CHECK_FALSE(marker_nonce(mb({"PUBLISH", kChannel + "x", nonce(3)}), kChannel).has_value());
  CHECK_FALSE(marker_nonce(mb({"PUBLISH", kChannel, nonce(3), "x"}), kChannel).has_value());
  CHECK_FALSE(marker_nonce(mb({"PUBLISH", kChannel}), kChannel).has_value());
  CHECK_FALSE(marker_nonce(mb({"SPUBLISH", kChannel, nonce(3)}), kChannel).has_value());
  CHECK_FALSE(marker_nonce(marker(3) + kPing, kChannel).has_value());  // one command, nothing after it
  CHECK_FALSE(marker_nonce(marker(3).substr(0, 20), kChannel).has_value());
  CHECK_FALSE(marker_nonce(mb({"SET", kChannel, nonce(3)}), kChannel).has_value());
}

TEST_CASE("align finds the exact fork at every position between marker k-1 and marker k") {
  size_t checked = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    const World w(seed, seed % 25);
    for (size_t fork = w.h.prev + 1; fork <= w.h.mark; ++fork) {
      if (!w.h.fork_ok[fork]) continue;  // inside MULTI/EXEC: see below
      CAPTURE(seed);
      CAPTURE(fork);
      const Link fresh = fresh_link(w.h, fork, w.h.mark, seed * 31 + static_cast<uint32_t>(fork));
      const Alignment a = w.align_fresh(split_ok(fresh.bytes, fresh.first), w.h.k);
      INFO(a.reason);
      check_served(w, a, fork);
      CHECK(a.matched == w.h.mark - fork + 1);
      CHECK(a.error == AlignError::kNone);
      ++checked;
    }
  }
  CHECK(checked > 500);
}

TEST_CASE("fork right after marker k-1: X is the end of marker k-1, db the db there") {
  const World w(7, 10);
  const Link fresh = fresh_link(w.h, w.h.prev + 1, w.h.mark, 1);
  const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), w.h.k);
  INFO(a.reason);
  check_served(w, a, w.h.prev + 1);
  CHECK(a.offset == w.live_start);
  CHECK(a.db == w.live_start_db);
  CHECK(a.matched == w.window.size());
}

TEST_CASE("fork right before marker k: the new link has only the marker") {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    const World w(seed, 3 + seed % 5);
    // PINGs around it and a SELECT 0: the link starts in db 0, no SELECT; a
    // copied buffer may leave it elsewhere and then SELECT 0 is needed.
    for (const std::string& bytes : {kPing + marker(w.h.k) + kPing, select_cmd(0) + marker(w.h.k)}) {
      const Alignment a = w.align_fresh(split_ok(bytes, 1), w.h.k);
      INFO(a.reason);
      check_served(w, a, w.h.mark);
      CHECK(a.matched == 1);
    }
  }
}

// Offsets worked out by hand: the db at X is the db of the last command
// before the fork; a SELECT just after X is served from the log.
TEST_CASE("SELECT immediately after X and immediately before the fork") {
  const std::string prev = marker(4), set_a = mb({"SET", "a", "1"}), set_b = mb({"SET", "b", "2"}),
                    set_c = mb({"SET", "c", "3"}), mark = marker(5);
  //                 db 0   db 0     -> db 5                  db 5            db 5    -> db 0
  const std::string log = prev + set_a + select_cmd(5) + set_b + kPing + set_c + select_cmd(0) + mark;
  const uint64_t first = 501;
  auto end_of = [&](const std::string& part) { return first + log.find(part) + part.size() - 1; };
  const uint64_t live_start = end_of(prev);
  const std::vector<StreamCommand> live = split_ok(std::string_view(log).substr(prev.size()), live_start + 1, 0);
  REQUIRE(live.size() == 4);

  struct Fork {
    std::string fresh;  // what 2.6 sends on a link that starts in db 0
    uint64_t x;
    int64_t db;
  };
  const Fork forks[] = {
      {set_a + select_cmd(5) + set_b + set_c + select_cmd(0) + mark, live_start, 0},
      // X = end of SET a, in db 0: the SELECT 5 at X+1 is part of the log served.
      {select_cmd(5) + set_b + kPing + set_c + select_cmd(0) + mark, end_of(set_a), 0},
      // The SELECT 5 before SET b is before X: the db at X is 5.
      {select_cmd(5) + set_c + select_cmd(0) + mark, end_of(set_b), 5},
      // X = end of SET c in db 5; the SELECT 0 before the marker is served.
      {mark, end_of(set_c), 5},
  };
  for (const Fork& f : forks) {
    CAPTURE(f.fresh);
    const Alignment a = align(live, live_start, 0, split_ok(f.fresh, 1), kChannel, nonce(5));
    INFO(a.reason);
    REQUIRE(a.ok);
    CHECK(a.offset == f.x);
    CHECK(a.db == f.db);
    // Served: SELECT <db>, then the log from X+1: the fresh link's commands, in their dbs.
    int64_t db = a.db;
    const std::vector<StreamCommand> served = split_ok(std::string_view(log).substr(a.offset + 1 - first), a.offset + 1, db);
    int64_t fresh_db = 0;
    const std::vector<StreamCommand> expected = split_ok(f.fresh, 1, fresh_db);
    REQUIRE(served.size() == expected.size());
    for (size_t i = 0; i < served.size(); ++i) {
      CHECK(served[i].bytes == expected[i].bytes);
      CHECK(served[i].db == expected[i].db);
    }
  }
  // SET b's db: 5 in the live stream; a link that starts in db 0 and gets no
  // SELECT 5 (a copied buffer) runs it in db 0: not aligned.
  const Alignment a = align(live, live_start, 0, split_ok(set_b + set_c + select_cmd(0) + mark, 1), kChannel, nonce(5));
  CHECK_FALSE(a.ok);
  CHECK(a.error == AlignError::kOtherDb);
  CHECK(a.matched == 0);
  CHECK(a.reason.find("runs in db 0, not db 5") != std::string::npos);
}

TEST_CASE("every live command matched: the db at X is live_start_db, the db marker k-1 ran in") {
  // A marker client that selected db 3: the live stream stays in db 3 from
  // marker k-1 on; the new link (from db 0) needs its own SELECT 3.
  const std::string prev = marker(1), set_a = mb({"SET", "a", "1"}), mark = marker(2);
  const std::string log = select_cmd(3) + prev + kPing + set_a + mark;
  const uint64_t first = 1;
  const uint64_t live_start = first + log.find(prev) + prev.size() - 1;
  const std::vector<StreamCommand> live = split_ok(std::string_view(log).substr(live_start), live_start + 1, 3);
  const Alignment a = align(live, live_start, 3, split_ok(select_cmd(3) + set_a + mark, 1), kChannel, nonce(2));
  INFO(a.reason);
  REQUIRE(a.ok);
  CHECK(a.offset == live_start);
  CHECK(a.db == 3);
  const std::vector<StreamCommand> served = split_ok(std::string_view(log).substr(a.offset), a.offset + 1, a.db);
  REQUIRE(served.size() == 2);
  CHECK(served[0].db == 3);
  CHECK(served[1].db == 3);
}

TEST_CASE("MULTI/EXEC: forks before MULTI and after EXEC align, a fork inside a block is refused") {
  const std::string prev = marker(1), mark = marker(2), multi = mb({"MULTI"}), exec = mb({"EXEC"});
  const std::string inc = mb({"INCR", "n"}), set = mb({"SET", "t", "1"});
  // A block in db 1 and an identical one in db 0: same bytes, other dbs.
  const std::string window = select_cmd(1) + multi + inc + kPing + set + exec + select_cmd(0) + multi + inc + set +
                             exec + kPing + mark;
  const uint64_t live_start = 1000;
  const std::vector<StreamCommand> live = split_ok(window, live_start + 1, 0);
  REQUIRE(live.size() == 9);
  // 2.6 sends each new link what follows its fork, from db 0.
  auto fresh_from = [&](size_t i) {
    std::string s;
    int64_t db = 0;
    for (size_t j = i; j < live.size(); ++j) {
      if (live[j].db != db) s += select_cmd(db = live[j].db);
      s += live[j].bytes;
    }
    return s;
  };
  for (size_t i = 0; i < live.size(); ++i) {
    CAPTURE(i);
    const std::string bytes = fresh_from(i);
    const Alignment a = align(live, live_start, 0, split_ok(bytes, 1), kChannel, nonce(2));
    INFO(a.reason);
    const bool between_blocks = i == 0 || i == 4 || i == 8;
    if (between_blocks) {
      REQUIRE(a.ok);
      CHECK(a.offset == (i == 0 ? live_start : live[i - 1].end));
      CHECK(a.db == (i == 0 ? 0 : live[i - 1].db));
    } else {
      CHECK_FALSE(a.ok);
      CHECK(a.error == AlignError::kInsideMulti);
      const uint64_t multi_end = live[i < 4 ? 0 : 4].end;
      CHECK(a.reason.find("MULTI ends at offset " + std::to_string(multi_end)) != std::string::npos);
    }
  }
}

TEST_CASE("a changed byte in any command of the new link: refused, saying which command") {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    const World w(seed, 12, true);
    for (size_t fork = w.h.prev + 1; fork < w.h.mark; ++fork) {
      if (!w.h.fork_ok[fork]) continue;
      for (size_t i = fork; i < w.h.mark; ++i) {  // every command but the marker
        CAPTURE(seed);
        CAPTURE(fork);
        CAPTURE(i);
        History h = w.h;
        std::string& b = h.cmds[i].bytes;
        change_a_byte(b);
        const Link fresh = fresh_link(h, fork, h.mark, seed);
        const std::vector<StreamCommand> cmds = split_ok(fresh.bytes, 1);
        const Alignment a = w.align_fresh(cmds, w.h.k);
        INFO(a.reason);
        CHECK_FALSE(a.ok);
        CHECK(a.error == AlignError::kCommandDiffers);
        CHECK(a.matched == i - fork);
        const std::string which = "command " + std::to_string(i - fork) + " of the new link (ending at offset " +
                                  std::to_string(fresh.ends[i - fork]) + ") is " + quoted(b);
        CHECK(a.reason.find(which) != std::string::npos);
        CHECK(a.reason.find("the live command ending at offset " + std::to_string(w.live.ends[i]) + " is " +
                            quoted(w.h.cmds[i].bytes)) != std::string::npos);
      }
    }
  }
}

TEST_CASE("a dropped command or two swapped commands on the new link: refused") {
  // Distinct commands: with repeated identical ones a dropped copy cannot be
  // told from a later fork, and that is still a correct alignment.
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    const World w(seed, 12, true);
    for (size_t fork = w.h.prev + 1; fork + 2 <= w.h.mark; ++fork) {
      if (!w.h.fork_ok[fork]) continue;
      for (size_t i = fork + 1; i < w.h.mark; ++i) {
        CAPTURE(seed);
        CAPTURE(fork);
        CAPTURE(i);
        History dropped = w.h;
        dropped.cmds.erase(dropped.cmds.begin() + static_cast<ptrdiff_t>(i));
        const Link fresh = fresh_link(dropped, fork, dropped.mark - 1, seed);
        const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), w.h.k);
        CHECK_FALSE(a.ok);
        CHECK(a.error == AlignError::kCommandDiffers);
        CHECK(a.matched == 0);  // shifted by one from the start

        History swapped = w.h;
        std::swap(swapped.cmds[i - 1], swapped.cmds[i]);
        const Link fresh2 = fresh_link(swapped, fork, swapped.mark, seed);
        const Alignment b = w.align_fresh(split_ok(fresh2.bytes, 1), w.h.k);
        CHECK_FALSE(b.ok);
        CHECK((b.error == AlignError::kCommandDiffers || b.error == AlignError::kOtherDb));
        CHECK(b.matched == i - 1 - fork);
      }
    }
  }
}

TEST_CASE("a copied output buffer: the new link's db at its start is wrong, refused unless it changes nothing") {
  // The master used another replica's output buffer up to copy_at, then
  // tracked this link's db from 0: a command in db 0 after the copy gets no
  // SELECT and runs in the db the buffer left the link in.
  size_t refused = 0, harmless = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const World w(seed, 14);
    for (size_t fork = w.h.prev + 1; fork <= w.h.mark; ++fork) {
      if (!w.h.fork_ok[fork]) continue;
      for (size_t copy_at = 1; copy_at <= w.h.mark - fork; ++copy_at) {
        CAPTURE(seed);
        CAPTURE(fork);
        CAPTURE(copy_at);
        const Link fresh = fresh_link(w.h, fork, w.h.mark, seed, copy_at);
        // The first command the link runs in another db than the master did (generator's view).
        size_t wrong = fresh.parsed_dbs.size();
        for (size_t i = 0; i < fresh.parsed_dbs.size(); ++i) {
          if (fresh.parsed_dbs[i] != w.h.cmds[fork + i].db) {
            wrong = i;
            break;
          }
        }
        const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), w.h.k);
        INFO(a.reason);
        if (wrong == fresh.parsed_dbs.size()) {
          check_served(w, a, fork);  // every command in its db: a true alignment
          ++harmless;
        } else {
          CHECK_FALSE(a.ok);
          CHECK(a.error == AlignError::kOtherDb);
          CHECK(a.matched == wrong);
          CHECK(a.reason.find("the new link's assumed db is wrong") != std::string::npos);
          ++refused;
        }
      }
    }
  }
  CHECK(refused > 100);
  CHECK(harmless > 100);
}

TEST_CASE("markers: missing, another nonce, an earlier one on the new link, one inside the live window") {
  const World w(11, 10, true);
  const size_t fork = w.h.prev + 3;
  REQUIRE(w.h.fork_ok[fork]);
  const int k = w.h.k;

  SUBCASE("the new link's window stops before its marker") {
    const Link fresh = fresh_link(w.h, fork, w.h.mark - 1, 1);
    const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), k);
    CHECK_FALSE(a.ok);
    CHECK(a.error == AlignError::kFreshNoMarker);
    CHECK(a.reason.find("not with marker " + quoted(nonce(k))) != std::string::npos);
  }
  SUBCASE("the new link ends with another marker (wrong nonce given)") {
    const Link fresh = fresh_link(w.h, fork, w.h.mark, 1);
    const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), k + 1);
    CHECK_FALSE(a.ok);
    CHECK(a.error == AlignError::kFreshNoMarker);
  }
  SUBCASE("the live window stops before the marker, or ends with another") {
    const Link fresh = fresh_link(w.h, fork, w.h.mark, 1);
    const std::vector<StreamCommand> cmds = split_ok(fresh.bytes, 1);
    std::vector<StreamCommand> live = w.window;
    live.pop_back();
    Alignment a = align(live, w.live_start, w.live_start_db, cmds, kChannel, nonce(k));
    CHECK_FALSE(a.ok);
    CHECK(a.error == AlignError::kLiveNoMarker);
    CHECK(a.reason.find("the live window ends with " + quoted(live.back().bytes)) != std::string::npos);
    const std::string other = mb({"PUBLISH", kChannel, nonce(k) + "0"});
    live.push_back({other, 0, live.back().end + other.size()});
    a = align(live, w.live_start, w.live_start_db, cmds, kChannel, nonce(k));
    CHECK_FALSE(a.ok);
    CHECK(a.error == AlignError::kLiveNoMarker);
  }
  SUBCASE("an earlier marker on the new link, anywhere before its last") {
    for (size_t at = fork; at <= w.h.mark; ++at) {
      CAPTURE(at);
      History h = w.h;
      h.cmds.insert(h.cmds.begin() + static_cast<ptrdiff_t>(at), Cmd{0, marker(k - 1)});
      const Link fresh = fresh_link(h, fork, h.mark + 1, 1);
      const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), k);
      CHECK_FALSE(a.ok);
      CHECK(a.error == AlignError::kEarlierMarkerInFresh);
      CHECK(a.reason.find("carries marker " + quoted(nonce(k - 1)) + " (its command " + std::to_string(at - fork)) !=
            std::string::npos);
    }
  }
  SUBCASE("the fork was before marker k-1 but the caller took k") {
    for (size_t early = 0; early <= w.h.prev; ++early) {
      if (!w.h.fork_ok[early]) continue;
      const Link fresh = fresh_link(w.h, early, w.h.mark, 1);
      const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), k);
      CHECK_FALSE(a.ok);
      CHECK(a.error == AlignError::kEarlierMarkerInFresh);
    }
  }
  SUBCASE("the live window starts before marker k-1") {
    const std::vector<StreamCommand> live = w.window_from(w.live.first - 1, w.live.ends[w.h.mark]);
    const Link fresh = fresh_link(w.h, fork, w.h.mark, 1);
    const Alignment a = align(live, w.live.first - 1, 0, split_ok(fresh.bytes, 1), kChannel, nonce(k));
    CHECK_FALSE(a.ok);
    CHECK(a.error == AlignError::kMarkerInLive);
    CHECK(a.reason.find("holds marker " + quoted(nonce(k - 1)) + " at offset " + std::to_string(w.live_start)) !=
          std::string::npos);
  }
}

TEST_CASE("more commands on the new link than in the live window: refused") {
  // The caller cut the live window too late (it lacks its first commands):
  // a fork before the cut cannot be placed.
  const World w(5, 10, true);
  const size_t cut = 4;
  const std::vector<StreamCommand> live = w.window_from(w.live.ends[w.h.prev + cut], w.live.ends[w.h.mark]);
  for (size_t fork = w.h.prev + 1; fork <= w.h.mark; ++fork) {
    if (!w.h.fork_ok[fork]) continue;
    CAPTURE(fork);
    const Link fresh = fresh_link(w.h, fork, w.h.mark, 3);
    const std::vector<StreamCommand> cmds = split_ok(fresh.bytes, 1);
    const Alignment a = align(live, w.live.ends[w.h.prev + cut], w.h.cmds[w.h.prev + cut].db, cmds, kChannel, nonce(w.h.k));
    if (fork <= w.h.prev + cut) {
      CHECK_FALSE(a.ok);
      CHECK(a.error == AlignError::kFreshLonger);
      CHECK(a.reason.find("the new link has " + std::to_string(cmds.size()) + " commands") != std::string::npos);
    } else {
      INFO(a.reason);
      check_served(w, a, fork);
    }
  }
}

TEST_CASE("empty windows: refused") {
  const World w(3, 5);
  const Link fresh = fresh_link(w.h, w.h.prev + 1, w.h.mark, 1);
  const std::vector<StreamCommand> cmds = split_ok(fresh.bytes, 1);
  const std::vector<StreamCommand> none;
  Alignment a = align(w.window, w.live_start, 0, none, kChannel, nonce(w.h.k));
  CHECK_FALSE(a.ok);
  CHECK(a.error == AlignError::kFreshNoMarker);
  CHECK(a.reason.find("the new link's window is empty") != std::string::npos);
  a = align(none, w.live_start, 0, cmds, kChannel, nonce(w.h.k));
  CHECK_FALSE(a.ok);
  CHECK(a.error == AlignError::kLiveNoMarker);
  CHECK(a.reason.find("the live window is empty") != std::string::npos);
  a = align(none, w.live_start, 0, none, kChannel, nonce(w.h.k));
  CHECK_FALSE(a.ok);
  CHECK(!a.reason.empty());
  // PINGs and SELECTs only: no commands either.
  a = align(w.window, w.live_start, 0, split_ok(kPing + select_cmd(3) + kPing, 1), kChannel, nonce(w.h.k));
  CHECK(a.error == AlignError::kFreshNoMarker);
}

TEST_CASE("fork positions inside MULTI/EXEC in generated streams are refused") {
  size_t inside = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const World w(seed, 20);
    for (size_t fork = w.h.prev + 1; fork <= w.h.mark; ++fork) {
      if (w.h.fork_ok[fork]) continue;
      CAPTURE(seed);
      CAPTURE(fork);
      const Link fresh = fresh_link(w.h, fork, w.h.mark, seed);
      const Alignment a = w.align_fresh(split_ok(fresh.bytes, 1), w.h.k);
      CHECK_FALSE(a.ok);
      CHECK(a.error == AlignError::kInsideMulti);
      ++inside;
    }
  }
  CHECK(inside > 20);
}
