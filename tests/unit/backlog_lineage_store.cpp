// The lineage store's one commit point: what readers see and where a resumed
// upstream link starts are always the same fact.
#include <doctest/doctest.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "backlog/lineage_store.h"
#include "backlog/manifest.h"
#include "tests/unit/backlog_fixtures.h"

using psync::backlog::LineageStore;
using psync::backlog::LogError;
using psync::backlog::ReplicationLog;
using psync::backlog::SnapshotWriter;

using backlog_test::FileSizeLimit;
using backlog_test::TempDir;

namespace {

std::string read_log(const LineageStore& store, uint64_t from, uint64_t to) {
  std::string out(to + 1 - from, '\0');
  out.resize(store.log().read(from, out.data(), out.size()));
  return out;
}

size_t open_fds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

}  // namespace

TEST_CASE("lineage store: appended bytes are invisible until committed, with their upstream offset") {
  TempDir dir;
  LineageStore store(dir.path, 1 << 20);
  store.reset(1);
  store.set_upstream("a" + std::string(39, '0'), 1000);
  int notified = 0;
  store.set_listener([&] { ++notified; });

  store.append("*1\r\n$4\r\nINCR");
  CHECK(store.has_uncommitted());
  CHECK(store.committed_end() == 0);
  CHECK(store.upstream().offset == 1000);  // the resume point does not move with appends
  CHECK(notified == 0);
  store.append("\r\n");
  store.commit(1014);
  CHECK_FALSE(store.has_uncommitted());
  CHECK(store.committed_end() == 14);
  CHECK(store.upstream().offset == 1014);
  CHECK(notified == 1);

  // A dropped upstream PING: the upstream position moves, the log does not,
  // nobody is woken.
  store.commit(1028);
  CHECK(store.committed_end() == 14);
  CHECK(store.upstream().offset == 1028);
  CHECK(notified == 1);

  // The proxy's own PING: the log moves, the upstream position does not.
  store.append("*1\r\n$4\r\nPING\r\n");
  store.commit_own();
  CHECK(store.committed_end() == 28);
  CHECK(store.upstream().offset == 1028);
  CHECK(notified == 2);
}

TEST_CASE("lineage store: rollback after a failed append resumes right after the last commit") {
  TempDir dir;
  LineageStore store(dir.path, 1 << 20);
  store.reset(1);
  store.set_upstream("b" + std::string(39, '0'), 0);
  store.append("0123456789");
  store.commit(10);
  // Part of a large command is in, uncommitted; then the disk fills up.
  store.append("abcde");
  bool thrown = false;
  {
    FileSizeLimit limit(17);
    try {
      store.append("fghij");
    } catch (const LogError&) {
      thrown = true;
    }
  }
  REQUIRE(thrown);
  CHECK(store.committed_end() == 10);
  CHECK(store.upstream().offset == 10);  // PSYNC <id> 11: the master resends from "abcde"
  std::string problems;
  CHECK(store.rollback(problems) == 5);
  CHECK(problems.empty());
  CHECK(store.log().last_offset() == 10);
  // What the master sends again goes right after the last committed byte.
  store.append("abcdefghij");
  store.commit(20);
  CHECK(read_log(store, 1, 20) == "0123456789abcdefghij");
  CHECK(store.rollback(problems) == 0);
}

TEST_CASE("lineage store: a lineage starts only from a snapshot at the committed end") {
  TempDir dir;
  LineageStore store(dir.path, 10);
  store.reset(1);
  for (int i = 0; i < 3; ++i) {
    store.append("0123456789");
    store.commit(0);
  }
  CHECK(store.log().segment_count() == 3);
  std::string problems;
  {
    SnapshotWriter w(dir.path);
    w.write("REDIS0006");
    auto wrong = w.commit("c" + std::string(39, '0'), 7);
    CHECK_THROWS_AS(store.begin_lineage(wrong, problems), std::logic_error);
  }
  store.append("x");  // uncommitted: refused too
  {
    SnapshotWriter w(dir.path);
    w.write("REDIS0006");
    auto snap = w.commit("d" + std::string(39, '0'), 30);
    CHECK_THROWS_AS(store.begin_lineage(snap, problems), std::logic_error);
    CHECK(store.rollback(problems) == 1);
    store.begin_lineage(snap, problems);
  }
  CHECK(problems.empty());
  CHECK(store.replid() == "d" + std::string(39, '0'));
  CHECK(store.psync_floor() == 31);
  CHECK(store.can_continue(store.replid(), 31));
  CHECK_FALSE(store.can_continue(store.replid(), 30));
  CHECK_FALSE(store.can_continue(store.replid(), 32));
  CHECK_FALSE(store.can_continue("e" + std::string(39, '0'), 31));
  // Segments wholly before the snapshot are gone (never the one written to).
  CHECK(store.log().segment_count() == 1);
}

TEST_CASE("replication log: a long log keeps a few files open, however many segments are read") {
  TempDir dir;
  ReplicationLog log(dir.path, 100);
  log.reset(1);
  const size_t before = open_fds();
  for (int i = 0; i < 300; ++i) log.append(std::string(100, static_cast<char>('a' + i % 26)));
  CHECK(log.segment_count() == 300);
  CHECK(log.open_files() == 1);  // only the segment written to
  CHECK(open_fds() <= before + 1);
  // A reader walking the whole log, and another one at the start.
  char buf[100];
  for (uint64_t off = 1; off <= log.last_offset(); off += 100) {
    REQUIRE(log.read(off, buf, 100) == 100);
    CHECK(buf[0] == static_cast<char>('a' + ((off - 1) / 100) % 26));
    REQUIRE(log.read(1, buf, 1) == 1);
  }
  CHECK(log.open_files() <= ReplicationLog::kMaxReadFiles + 1);
  CHECK(open_fds() <= before + ReplicationLog::kMaxReadFiles + 1);
  // A span keeps its file usable after the log closed its own reference.
  auto held = log.span(1, 10);
  for (uint64_t off = 1001; off <= log.last_offset(); off += 100) REQUIRE(log.read(off, buf, 1) == 1);
  CHECK(::pread(held.fd, buf, 10, 0) == 10);
  CHECK(std::string(buf, 10) == std::string(10, 'a'));
}

TEST_CASE("replication log: truncating back into a closed segment writes on in it") {
  TempDir dir;
  ReplicationLog log(dir.path, 10);
  log.reset(1);
  log.append("0123456789");
  log.append("abcdefghij");
  log.append("KLM");
  CHECK(log.open_files() == 1);
  CHECK(log.truncate_to(16).empty());  // into the closed segment at 11
  CHECK(log.segment_count() == 2);
  log.append("XYZ");
  char buf[8] = {};
  CHECK(log.read(11, buf, 8) == 8);
  CHECK(std::string(buf, 8) == "abcdeXYZ");
}

TEST_CASE("lineage store: a refreshed snapshot at X serves full resyncs, retention keeps X+1-backlog and what a full resync in progress reads") {
  TempDir dir;
  LineageStore store(dir.path, 10);
  store.reset(1);
  const std::string id = "f" + std::string(39, '0');
  std::string problems;
  {
    SnapshotWriter w(dir.path);
    w.write("REDIS0006-first");
    store.begin_lineage(w.commit(id, 0), problems);
  }
  for (int i = 0; i < 10; ++i) {  // offsets 1..100, ten segments
    store.append("0123456789");
    store.commit(0);
  }
  auto first = store.snapshot();
  CHECK(store.bytes_since_snapshot() == 100);
  const std::string select = "*2\r\n$6\r\nSELECT\r\n$1\r\n5\r\n";
  {
    SnapshotWriter w(dir.path, "refresh");
    w.write("REDIS0006-second");
    auto snap = w.commit(id, 70, select);
    CHECK(snap->fullresync_offset() == 70 - select.size());
    // Not of this lineage, past the committed end: refused.
    SnapshotWriter other(dir.path, "other");
    other.write("x");
    CHECK_THROWS_AS(store.install_snapshot(other.commit(id, 101)), std::logic_error);
    store.install_snapshot(snap);
  }
  CHECK(store.snapshot()->offset() == 70);
  CHECK(store.snapshot()->prefix() == select);
  CHECK(store.bytes_since_snapshot() == 30);
  CHECK(store.lineage_start() == 0);
  // The first snapshot's reader still reads its bytes although the file was replaced.
  char buf[15];
  CHECK(::pread(first->fd(), buf, 15, 0) == 15);
  CHECK(std::string(buf, 15) == "REDIS0006-first");
  // Partial resyncs still reach back to the lineage's first byte until trimmed.
  CHECK(store.psync_floor() == 1);
  CHECK(store.can_continue(id, 1));

  // A full resync from the first snapshot is in progress: it will read from offset 1.
  CHECK(store.trim(20, 1, problems) == 0);
  CHECK(store.log().first_offset() == 1);
  // It has finished: keep X+1-20 = 51 on (the segment holding 51 starts at 51).
  CHECK(store.trim(20, UINT64_MAX, problems) == 50);
  CHECK(problems.empty());
  CHECK(store.log().first_offset() == 51);
  CHECK(store.psync_floor() == 51);
  CHECK_FALSE(store.can_continue(id, 50));
  CHECK(store.can_continue(id, 51));
  // backlog 0: only what a full resync from X needs (the segment holding X+1 = 71).
  store.trim(0, UINT64_MAX, problems);
  CHECK(store.log().first_offset() == 71);
}

TEST_CASE("replication log: reopened from its segment list after a crash, a torn tail past the end is cut") {
  TempDir dir;
  std::vector<ReplicationLog::SegmentInfo> listed;
  {
    ReplicationLog log(dir.path, 10);
    log.reset(1);
    log.append("0123456789");
    log.append("abcdefghij");
    log.append("KLMNOPQ");  // offsets 21..27
    listed = log.segments();
    log.append("RS");       // never committed: a torn tail at 28..29
  }
  REQUIRE(listed.size() == 3);
  CHECK(listed[2].file == "log-00000000000000000021.seg");
  ReplicationLog log(dir.path, 10);
  log.reopen(listed, 1, 28);  // the last committed byte is 27
  CHECK(log.last_offset() == 27);
  CHECK(log.segment_count() == 3);
  std::string all(27, '\0');
  CHECK(log.read(1, all.data(), all.size()) == 27);
  CHECK(all == "0123456789abcdefghijKLMNOPQ");
  struct stat st;
  REQUIRE(::stat(dir.file(listed[2].file).c_str(), &st) == 0);
  CHECK(st.st_size == 7);  // the torn tail is gone from the file
  log.append("xyz");
  CHECK(log.read(28, all.data(), 3) == 3);
  CHECK(all.substr(0, 3) == "xyz");

  // A segment shorter than the log needs (a crash lost pages): refused with its name.
  ReplicationLog other(dir.path, 10);
  auto shorter = listed;
  REQUIRE(::truncate(dir.file(listed[1].file).c_str(), 5) == 0);
  try {
    other.reopen(shorter, 1, 28);
    FAIL("reopen accepted a short segment");
  } catch (const LogError& e) {
    CHECK(std::string(e.what()).find(listed[1].file) != std::string::npos);
  }
  // Not contiguous: refused.
  shorter[1].first_offset = 12;
  CHECK_THROWS_AS(other.reopen(shorter, 1, 28), std::invalid_argument);
}

TEST_CASE("lineage store: the data directory describes it at every step: manifest.json, commit.rec and the files agree") {
  TempDir dir;
  LineageStore store(dir.path, 10);
  store.reset(1);
  std::string error, problems;
  auto check_dir = [&](const std::string& step) {
    INFO(step);
    auto m = psync::backlog::read_manifest(dir.path, error);
    REQUIRE_MESSAGE(m, error);
    // The manifest on disk is an older commit point or the same one (M1): the
    // same lineage, snapshot and segments, the last one maybe shorter.
    const auto now = store.manifest();
    CHECK(m->replid == now.replid);
    CHECK(m->snapshot == now.snapshot);
    // (A segment opened for bytes not committed yet is listed, empty, from the
    // next commit on.)
    REQUIRE(m->segments.size() <= now.segments.size());
    REQUIRE(m->segments.size() + 1 >= now.segments.size());
    if (now.segments.size() > m->segments.size()) CHECK(now.segments.back().size == 0);
    for (size_t i = 0; i < m->segments.size(); ++i) CHECK(m->segments[i].first_offset == now.segments[i].first_offset);
    CHECK(m->upstream_replid == now.upstream_replid);
    auto rec = psync::backlog::CommitRecord::read(dir.path, error);
    REQUIRE_MESSAGE(rec, error);
    CHECK(rec->committed_end == store.committed_end());
    CHECK(rec->upstream_offset == store.upstream().offset);
    CHECK(rec->upstream_replid == store.upstream().replid);
    std::string warnings;
    CHECK(psync::backlog::check_files(dir.path, *m, rec->committed_end, warnings) == "");
    CHECK(psync::backlog::log_end(*m) <= rec->committed_end);
  };
  check_dir("empty");
  const std::string id = "a" + std::string(39, 'b');
  {
    SnapshotWriter w(dir.path);
    w.write("REDIS0006-lineage");
    store.begin_lineage(w.commit(id, 0), problems);
  }
  store.set_upstream("c" + std::string(39, 'd'), 5000);
  check_dir("a lineage");
  for (int i = 0; i < 7; ++i) {
    store.append("0123");
    store.append("456789");  // the second half of a command
    store.commit(5010 + 10 * static_cast<uint64_t>(i));
    check_dir("commits across segments");
  }
  store.append("uncommitted");
  check_dir("bytes appended and not committed are not described");
  CHECK(store.rollback(problems) == 11);
  {
    SnapshotWriter w(dir.path, "refresh");
    w.write("REDIS0006-refreshed");
    store.install_snapshot(w.commit(id, 50, "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"));
  }
  check_dir("a refreshed snapshot");
  CHECK(store.trim(10, UINT64_MAX, problems) > 0);
  check_dir("trimmed");
  store.forget_upstream();
  check_dir("the upstream forgotten");
}

TEST_CASE("lineage store: a new replid keeps the old one as replid2 up to the committed end + 1, and a restart reopens both") {
  TempDir dir;
  const std::string a = "a" + std::string(39, '0');
  const std::string b = "b" + std::string(39, '0');
  std::string problems;
  {
    LineageStore store(dir.path, 1 << 20);
    store.reset(1);
    SnapshotWriter w(dir.path);
    w.write("REDIS0006");
    store.begin_lineage(w.commit(a, 0), problems);
    store.append("0123456789");
    store.commit(0);
    store.append("x");  // uncommitted: no switch
    CHECK_THROWS_AS(store.switch_replid(b), std::logic_error);
    store.rollback(problems);
    CHECK_THROWS_AS(store.switch_replid(a), std::logic_error);  // not a new one
    store.switch_replid(b);
    CHECK(store.replid() == b);
    CHECK(store.replid2() == a);
    CHECK(store.second_offset() == 11);
    store.append("after");
    store.commit(0);
    // The old replid up to the switch point, the new one to the end.
    CHECK(store.can_continue(a, 11));
    CHECK(store.can_continue(a, 5));
    CHECK_FALSE(store.can_continue(a, 12));
    CHECK(store.can_continue(b, 16));
    CHECK(store.can_continue(b, 3));
    store.close_cleanly();
  }
  LineageStore again(dir.path, 1 << 20);
  std::string what;
  REQUIRE(again.open(what) == LineageStore::Reopen::kReopened);
  CHECK(again.replid() == b);
  CHECK(again.replid2() == a);
  CHECK(again.second_offset() == 11);
  CHECK(again.can_continue(a, 11));
  CHECK_FALSE(again.can_continue(a, 12));
  // A new lineage has no replid2.
  SnapshotWriter w(dir.path);
  w.write("REDIS0006");
  again.begin_lineage(w.commit("c" + std::string(39, '0'), again.committed_end()), problems);
  CHECK(again.replid2().empty());
  CHECK(again.second_offset() == -1);
  CHECK_FALSE(again.can_continue(a, 11));
}
