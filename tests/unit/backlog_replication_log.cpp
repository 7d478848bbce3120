#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/backlog_fixtures.h"
#include "backlog/replication_log.h"

using psync::backlog::LogError;
using psync::backlog::ReplicationLog;
using psync::backlog::Span;

using backlog_test::FileSizeLimit;
using backlog_test::TempDir;

namespace {

std::string seg_name(uint64_t first_offset) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "log-%020llu.seg", static_cast<unsigned long long>(first_offset));
  return buf;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_size);
}

std::vector<std::string> seg_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.starts_with("log-") && name.ends_with(".seg")) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_all(const ReplicationLog& log, uint64_t offset, size_t len) {
  std::string out(len, '\0');
  out.resize(log.read(offset, out.data(), len));
  return out;
}

std::string pread_span(const Span& s) {
  std::string out(s.len, '\0');
  ssize_t n = ::pread(s.fd, out.data(), s.len, static_cast<off_t>(s.file_pos));
  REQUIRE(n == static_cast<ssize_t>(s.len));
  return out;
}

// Deterministic bytes: the byte at offset o is a function of o.
std::string pattern(uint64_t from, size_t len) {
  std::string s(len, '\0');
  for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>('a' + (from + i) % 26);
  return s;
}

}  // namespace

TEST_CASE("replication log: default state before any reset") {
  TempDir dir;
  ReplicationLog log(dir.path, 100);
  CHECK(log.first_offset() == 1);
  CHECK(log.last_offset() == 0);
  CHECK(log.next_offset() == 1);
  CHECK(log.contains(1));
  CHECK_FALSE(log.contains(0));
  CHECK_FALSE(log.contains(2));
  Span s = log.span(1, 10);
  CHECK(s.len == 0);
  CHECK(s.fd == -1);
  CHECK(log.segment_count() == 0);
  CHECK(log.bytes_on_disk() == 0);
  CHECK(log.dir() == dir.path);

  log.append("hello");
  CHECK(log.first_offset() == 1);
  CHECK(log.last_offset() == 5);
  CHECK(read_all(log, 1, 5) == "hello");
  CHECK(exists(dir.file(seg_name(1))));
}

TEST_CASE("replication log: reset(N) and contains() edges") {
  TempDir dir;
  ReplicationLog log(dir.path, 100);
  log.reset(1001);
  CHECK(log.first_offset() == 1001);
  CHECK(log.last_offset() == 1000);
  CHECK(log.next_offset() == 1001);
  CHECK(log.contains(1001));
  CHECK_FALSE(log.contains(1000));
  CHECK_FALSE(log.contains(1002));
  CHECK(log.span(1001, 10).len == 0);
  CHECK(log.span(1001, 10).fd == -1);
  CHECK_THROWS_AS(log.span(1000, 10), std::out_of_range);
  CHECK_THROWS_AS(log.span(1002, 10), std::out_of_range);
  char c;
  CHECK_THROWS_AS(log.read(1002, &c, 1), std::out_of_range);
  CHECK_THROWS_AS(log.read(1002, &c, 0), std::out_of_range);
  CHECK(log.read(1001, &c, 1) == 0);
  CHECK(log.segment_count() == 0);  // segments are created by the first append

  // PROTOCOL.md: FULLRESYNC 1000, then SELECT (23 bytes) + SET (28 bytes): the replica ACKs 1051.
  std::string select = "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n";
  std::string set = "*3\r\n$3\r\nSET\r\n$2\r\nkk\r\n$1\r\nv\r\n";
  REQUIRE(select.size() == 23);
  REQUIRE(set.size() == 28);
  log.append(select);
  log.append(set);
  CHECK(log.last_offset() == 1051);
  CHECK(log.first_offset() == 1001);
  CHECK(log.contains(1001));
  CHECK(log.contains(1052));
  CHECK_FALSE(log.contains(1000));
  CHECK_FALSE(log.contains(1053));
  CHECK(read_all(log, 1001, 51) == select + set);
  CHECK(read_all(log, 1024, 100) == set);  // read stops at next_offset()
  CHECK(read_all(log, 1052, 10).empty());
  CHECK(exists(dir.file(seg_name(1001))));

  CHECK_THROWS_AS(log.reset(0), std::invalid_argument);
}

TEST_CASE("replication log: empty append changes nothing") {
  TempDir dir;
  ReplicationLog log(dir.path, 100);
  log.reset(7);
  log.append("");
  CHECK(log.segment_count() == 0);
  CHECK(log.next_offset() == 7);
  CHECK(seg_files(dir.path).empty());
}

TEST_CASE("replication log: segment files are named by first offset, mode 0600, hold the bytes") {
  TempDir dir;
  ReplicationLog log(dir.path, 10);
  log.reset(42);
  log.append("0123456789");  // fills the first segment exactly
  log.append("abc");         // starts the second one at 52
  CHECK(log.segment_count() == 2);
  CHECK(seg_files(dir.path) == std::vector<std::string>{seg_name(42), seg_name(52)});
  for (const auto& name : seg_files(dir.path)) {
    struct stat st;
    REQUIRE(::stat(dir.file(name).c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
  }
  std::ifstream f(dir.file(seg_name(42)), std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(content == "0123456789");
  CHECK(file_size(dir.file(seg_name(52))) == 3);
  CHECK(log.bytes_on_disk() == 13);
  // The fd is close-on-exec.
  int flags = fcntl(log.span(42, 1).fd, F_GETFD);
  CHECK((flags & FD_CLOEXEC) != 0);
}

TEST_CASE("replication log: one append is never split, so a segment may exceed segment_bytes") {
  TempDir dir;
  ReplicationLog log(dir.path, 100);
  log.reset(1);
  log.append(pattern(1, 250));
  CHECK(log.segment_count() == 1);
  CHECK(log.bytes_on_disk() == 250);
  Span s = log.span(1, 1000);
  CHECK(s.len == 250);
  log.append(pattern(251, 5));
  CHECK(log.segment_count() == 2);
  CHECK(log.span(251, 1000).file_pos == 0);
  CHECK(read_all(log, 1, 255) == pattern(1, 255));
}

TEST_CASE("replication log: offsets, spans and reads across many segments") {
  TempDir dir;
  ReplicationLog log(dir.path, 100);
  const uint64_t start = 5000;
  log.reset(start);

  // Appends of varying sizes; remember where each segment starts.
  std::string all;
  std::vector<uint64_t> seg_starts;
  uint64_t current_seg_size = 0;
  for (int i = 0; i < 200; ++i) {
    size_t len = 1 + static_cast<size_t>(i * 7) % 37;
    uint64_t off = start + all.size();
    if (seg_starts.empty() || current_seg_size >= 100) {
      seg_starts.push_back(off);
      current_seg_size = 0;
    }
    log.append(pattern(off, len));
    all += pattern(off, len);
    current_seg_size += len;
    CHECK(log.last_offset() == start + all.size() - 1);
  }
  CHECK(log.segment_count() == seg_starts.size());
  CHECK(log.segment_count() > 20);
  CHECK(log.first_offset() == start);
  CHECK(log.bytes_on_disk() == all.size());

  std::vector<std::string> expected_files;
  for (uint64_t s : seg_starts) expected_files.push_back(seg_name(s));
  CHECK(seg_files(dir.path) == expected_files);
  uint64_t on_disk = 0;
  for (const auto& name : expected_files) on_disk += file_size(dir.file(name));
  CHECK(on_disk == log.bytes_on_disk());

  // The whole log, and reads from every offset crossing segment boundaries.
  CHECK(read_all(log, start, all.size()) == all);
  for (uint64_t off = start; off <= log.next_offset(); off += 3) {
    size_t want = 250;
    size_t avail = static_cast<size_t>(log.next_offset() - off);
    CHECK(read_all(log, off, want) == all.substr(off - start, std::min(want, avail)));
  }

  // Span boundaries exactly at segment ends.
  for (size_t i = 0; i < seg_starts.size(); ++i) {
    uint64_t first = seg_starts[i];
    uint64_t end = i + 1 < seg_starts.size() ? seg_starts[i + 1] : log.next_offset();
    uint64_t seg_len = end - first;

    Span whole = log.span(first, 1 << 20);
    CHECK(whole.file_pos == 0);
    CHECK(whole.len == seg_len);
    CHECK(pread_span(whole) == all.substr(first - start, seg_len));

    Span last_byte = log.span(end - 1, 1 << 20);  // last byte of the segment
    CHECK(last_byte.fd == whole.fd);
    CHECK(last_byte.file_pos == seg_len - 1);
    CHECK(last_byte.len == 1);

    Span limited = log.span(first + 1, 2);
    CHECK(limited.file_pos == 1);
    CHECK(limited.len == std::min<uint64_t>(2, seg_len - 1));

    if (i + 1 < seg_starts.size()) {
      Span next = log.span(end, 1 << 20);  // first byte of the next segment
      CHECK(next.fd != whole.fd);
      CHECK(next.file_pos == 0);
      CHECK(next.len > 0);
    }
  }

  // At next_offset(): len 0, on the last segment's fd.
  Span at_end = log.span(log.next_offset(), 100);
  CHECK(at_end.len == 0);
  CHECK(at_end.fd == log.span(seg_starts.back(), 1).fd);
  CHECK_THROWS_AS(log.span(log.next_offset() + 1, 1), std::out_of_range);
  CHECK_THROWS_AS(log.span(start - 1, 1), std::out_of_range);
}

TEST_CASE("replication log: trim_before removes whole old segments, never the writing one") {
  TempDir dir;
  ReplicationLog log(dir.path, 10);
  log.reset(1);
  for (int i = 0; i < 5; ++i) log.append(pattern(1 + 10 * i, 10));  // segments at 1, 11, 21, 31, 41
  REQUIRE(log.segment_count() == 5);

  log.trim_before(1);  // nothing is below offset 1
  CHECK(log.segment_count() == 5);
  log.trim_before(10);  // offset 10 is the last byte of the first segment: kept
  CHECK(log.segment_count() == 5);
  CHECK(log.first_offset() == 1);

  Span held = log.span(1, 10);
  log.trim_before(11);  // the first segment's bytes are all below 11
  CHECK(log.segment_count() == 4);
  CHECK(log.first_offset() == 11);
  CHECK_FALSE(exists(dir.file(seg_name(1))));
  CHECK(log.bytes_on_disk() == 40);
  // contains() edges after trim.
  CHECK_FALSE(log.contains(10));
  CHECK(log.contains(11));
  CHECK(log.contains(51));
  CHECK_FALSE(log.contains(52));
  CHECK_THROWS_AS(log.span(10, 1), std::out_of_range);
  // A reader holding a span still reads from the unlinked file.
  CHECK(pread_span(held) == pattern(1, 10));

  log.trim_before(35);  // removes 11.. and 21..; 31..40 holds 35
  CHECK(log.first_offset() == 31);
  CHECK(seg_files(dir.path) == std::vector<std::string>{seg_name(31), seg_name(41)});

  log.trim_before(1000);  // everything is below, but the writing segment stays
  CHECK(log.segment_count() == 1);
  CHECK(log.first_offset() == 41);
  CHECK(read_all(log, 41, 100) == pattern(41, 10));
  CHECK(seg_files(dir.path) == std::vector<std::string>{seg_name(41)});

  log.append(pattern(51, 4));  // the last segment is full: a new one starts at 51
  CHECK(log.segment_count() == 2);
  log.trim_before(1000);
  CHECK(log.segment_count() == 1);
  CHECK(log.first_offset() == 51);
  CHECK(read_all(log, 51, 100) == pattern(51, 4));
}

TEST_CASE("replication log: reset removes the files of an earlier instance, keeps other files") {
  TempDir dir;
  {
    ReplicationLog earlier(dir.path, 10);
    earlier.reset(1);
    for (int i = 0; i < 4; ++i) earlier.append(pattern(1 + 10 * i, 10));
    REQUIRE(seg_files(dir.path).size() == 4);
  }
  std::ofstream(dir.file("other.txt")) << "keep me";
  std::ofstream(dir.file("log-notes.txt")) << "keep me too";
  std::filesystem::create_directory(dir.file("log-dir.seg"));  // a directory: not ours

  ReplicationLog log(dir.path, 10);
  log.reset(500);
  CHECK(seg_files(dir.path) == std::vector<std::string>{"log-dir.seg"});
  CHECK(exists(dir.file("other.txt")));
  CHECK(exists(dir.file("log-notes.txt")));
  CHECK(log.segment_count() == 0);
  CHECK(log.first_offset() == 500);

  // Reset again with live segments and a reader holding a span.
  log.append("abcdefghij");
  log.append("klm");
  Span held = log.span(500, 100);
  log.reset(2000);
  CHECK(log.segment_count() == 0);
  CHECK(log.bytes_on_disk() == 0);
  CHECK(log.first_offset() == 2000);
  CHECK_FALSE(log.contains(500));
  CHECK(seg_files(dir.path) == std::vector<std::string>{"log-dir.seg"});
  CHECK(pread_span(held) == "abcdefghij");
  log.append("xyz");
  CHECK(read_all(log, 2000, 3) == "xyz");
}

TEST_CASE("replication log: reset on a missing directory throws LogError") {
  ReplicationLog log("/tmp/psync-backlog-does-not-exist/nowhere", 10);
  CHECK_THROWS_AS(log.reset(1), LogError);
}

TEST_CASE("replication log: a failed write leaves the state unchanged and truncates the file") {
  TempDir dir;
  ReplicationLog log(dir.path, 100);
  log.reset(1);
  log.append(pattern(1, 50));
  const std::string path = dir.file(seg_name(1));

  SUBCASE("in the current segment: partial bytes are truncated away") {
    bool thrown = false;
    std::string message;
    {
      FileSizeLimit limit(60);  // the write gets 10 bytes in, then EFBIG
      try {
        log.append(pattern(51, 30));
      } catch (const LogError& e) {
        thrown = true;
        message = e.what();
      }
    }
    CHECK(thrown);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find(std::strerror(EFBIG)) != std::string::npos);
    CHECK(log.last_offset() == 50);
    CHECK(log.bytes_on_disk() == 50);
    CHECK(file_size(path) == 50);
    CHECK(log.segment_count() == 1);

    // The log goes on where it was.
    log.append(pattern(51, 30));
    CHECK(log.last_offset() == 80);
    CHECK(file_size(path) == 80);
    CHECK(read_all(log, 1, 80) == pattern(1, 80));
  }

  SUBCASE("in a new segment: the new segment is removed") {
    log.append(pattern(51, 50));  // the first segment is now full (100 bytes)
    bool thrown = false;
    {
      FileSizeLimit limit(10);
      try {
        log.append(pattern(101, 30));
      } catch (const LogError&) {
        thrown = true;
      }
    }
    CHECK(thrown);
    CHECK(log.last_offset() == 100);
    CHECK(log.segment_count() == 1);
    CHECK_FALSE(exists(dir.file(seg_name(101))));
    CHECK(log.span(101, 10).len == 0);

    log.append(pattern(101, 30));
    CHECK(log.segment_count() == 2);
    CHECK(read_all(log, 1, 200) == pattern(1, 130));
  }
}

TEST_CASE("replication log: truncate_to takes back an unfinished tail, across segments") {
  TempDir dir;
  ReplicationLog log(dir.path, 10);
  log.reset(1);
  log.append("0123456789");  // segment at 1
  log.append("abcdefghij");  // segment at 11
  log.append("KLMNO");       // segment at 21
  REQUIRE(log.segment_count() == 3);

  SUBCASE("inside the last segment") {
    CHECK(log.truncate_to(23).empty());
    CHECK(log.last_offset() == 22);
    CHECK(file_size(dir.file(seg_name(21))) == 2);
    log.append("xy");
    char buf[4] = {};
    CHECK(log.read(21, buf, 4) == 4);
    CHECK(std::string(buf, 4) == "KLxy");
  }
  SUBCASE("into an earlier segment: later segment files go") {
    CHECK(log.truncate_to(15).empty());
    CHECK(log.last_offset() == 14);
    CHECK(log.segment_count() == 2);
    CHECK_FALSE(exists(dir.file(seg_name(21))));
    CHECK(file_size(dir.file(seg_name(11))) == 4);
    CHECK(log.bytes_on_disk() == 14);
    log.append("Z");
    char buf[5] = {};
    CHECK(log.read(11, buf, 5) == 5);
    CHECK(std::string(buf, 5) == "abcdZ");
  }
  SUBCASE("to the end: nothing changes") {
    CHECK(log.truncate_to(26).empty());
    CHECK(log.last_offset() == 25);
    CHECK(log.bytes_on_disk() == 25);
  }
  SUBCASE("outside the log: refused") {
    CHECK_THROWS_AS(log.truncate_to(27), std::out_of_range);
    log.trim_before(21);
    CHECK_THROWS_AS(log.truncate_to(5), std::out_of_range);
    CHECK(log.last_offset() == 25);
  }
}
