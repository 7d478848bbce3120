// The data directory describes itself: manifest.json (what the lineage is
// made of), commit.rec (the latest commit point), and the check of the files
// against both.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "backlog/manifest.h"
#include "tests/unit/backlog_fixtures.h"

using psync::backlog::LogError;
using psync::backlog::Manifest;
using psync::backlog::ManifestSegment;
using psync::backlog::ManifestSnapshot;
using psync::backlog::parse_manifest;
using psync::backlog::read_manifest;
using psync::backlog::segment_file_name;
using psync::backlog::to_json;
using psync::backlog::write_manifest;

using backlog_test::FileSizeLimit;
using backlog_test::TempDir;

namespace {

const std::string kReplid = "8f3c0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b";
const std::string kReplid2 = "0123456789abcdef0123456789abcdef01234567";
const std::string kUpstream = "fedcba9876543210fedcba9876543210fedcba98";
const std::string kPath = "/data/manifest.json";

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
  REQUIRE(f.good());
}

// A lineage after a failover and a snapshot refresh: a prefix with CR LF and
// NUL bytes, three segments.
Manifest full_manifest() {
  Manifest m;
  m.replid = kReplid;
  m.replid2 = kReplid2;
  m.second_offset = 500;
  m.lineage_start = 100;
  ManifestSnapshot s;
  s.file = "snapshot-" + kReplid + ".rdb";
  s.offset = 1000;
  s.prefix = std::string("*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n") + std::string("\0\xff\x01", 3);
  s.bytes = 123456;
  s.created_unix = 1700000000;
  m.snapshot = s;
  m.log_first_offset = 101;
  m.segments = {{segment_file_name(101), 101, 400},
                {segment_file_name(501), 501, 1000},
                {segment_file_name(1501), 1501, 17}};
  m.upstream_replid = kUpstream;
  m.upstream_offset = 987654321;
  return m;
}

// Parses the JSON of full_manifest() changed by edit; returns the error.
template <class Edit>
std::string error_after(Edit edit) {
  nlohmann::json j = nlohmann::json::parse(to_json(full_manifest()));
  edit(j);
  std::string error;
  auto m = parse_manifest(j.dump(), kPath, error);
  CHECK_FALSE(m.has_value());
  CHECK(error.starts_with(kPath + ": "));
  return error;
}

std::string error_of(const std::string& text) {
  std::string error;
  auto m = parse_manifest(text, kPath, error);
  CHECK_FALSE(m.has_value());
  CHECK(error.starts_with(kPath + ": "));
  return error;
}

}  // namespace

TEST_CASE("manifest: a full manifest goes through JSON unchanged, the prefix as hex") {
  const Manifest m = full_manifest();
  CHECK(psync::backlog::validate_manifest(m) == "");
  CHECK(psync::backlog::log_end(m) == 1517);
  const std::string text = to_json(m);
  CHECK(text.ends_with("\n"));
  CHECK(text.find('\0') == std::string::npos);
  CHECK(text.find("\"prefix_hex\": \"2a320d0a24360d0a53454c4543540d0a24310d0a330d0a00ff01\"") != std::string::npos);

  std::string error = "stale";
  auto back = parse_manifest(text, kPath, error);
  REQUIRE(back.has_value());
  CHECK(error == "");
  CHECK(*back == m);
  CHECK(back->snapshot->prefix.size() == 26);
  CHECK(back->snapshot->prefix[23] == '\0');
}

TEST_CASE("manifest: no lineage yet (no snapshot, no replid2, empty log) goes through JSON") {
  Manifest m;
  m.log_first_offset = 42;
  CHECK(psync::backlog::log_end(m) == 41);
  const std::string text = to_json(m);
  CHECK(text.find("\"snapshot\": null") != std::string::npos);
  CHECK(text.find("\"replid2\": \"0000000000000000000000000000000000000000\"") != std::string::npos);
  std::string error;
  auto back = parse_manifest(text, kPath, error);
  REQUIRE(back.has_value());
  CHECK(*back == m);
}

TEST_CASE("manifest: fields it does not know are ignored") {
  nlohmann::json j = nlohmann::json::parse(to_json(full_manifest()));
  j["added_later"] = {{"x", 1}};
  j["log"]["segments"][0]["checksum"] = "abc";
  std::string error;
  auto m = parse_manifest(j.dump(), kPath, error);
  REQUIRE(m.has_value());
  CHECK(*m == full_manifest());
}

TEST_CASE("manifest: a format version it does not read") {
  CHECK(error_after([](nlohmann::json& j) { j["format"] = 2; }) ==
        kPath + ": written by a newer psync-proxy (format 2; this one reads 1)");
  // The version is checked first: a newer format may have other fields.
  CHECK(error_after([](nlohmann::json& j) {
          j = nlohmann::json{{"format", 7}, {"something", "else"}};
        }) == kPath + ": written by a newer psync-proxy (format 7; this one reads 1)");
  CHECK(error_after([](nlohmann::json& j) { j["format"] = 0; }) ==
        kPath + ": unknown format version 0 (this one reads 1)");
  CHECK(error_after([](nlohmann::json& j) { j["format"] = -3; }) ==
        kPath + ": unknown format version -3 (this one reads 1)");
  CHECK(error_after([](nlohmann::json& j) { j["format"] = "1"; }) ==
        kPath + ": format: must be an integer, not string \"1\"");
  CHECK(error_after([](nlohmann::json& j) { j.erase("format"); }) == kPath + ": missing field format");
}

TEST_CASE("manifest: not JSON, or cut short") {
  CHECK(error_of("hello").starts_with(kPath + ": not valid JSON: parse error at line 1, column 1"));
  CHECK(error_of("").starts_with(kPath + ": not valid JSON: "));
  const std::string text = to_json(full_manifest());
  const std::string cut = error_of(text.substr(0, text.size() / 2));
  CHECK(cut.starts_with(kPath + ": not valid JSON: "));
  CHECK(cut.find("parse error at line ") != std::string::npos);
  CHECK(error_of("[1, 2]") == kPath + ": not a manifest: the JSON is array [1,2], not an object");
  // The parser would stop at a NUL and take what is before for all of it.
  CHECK(error_of(to_json(full_manifest()) + std::string(1, '\0') + "junk") ==
        kPath + ": not valid JSON: a NUL byte at byte " + std::to_string(to_json(full_manifest()).size()));
}

TEST_CASE("manifest: a missing field is named with its place") {
  CHECK(error_after([](nlohmann::json& j) { j.erase("log"); }) == kPath + ": missing field log");
  CHECK(error_after([](nlohmann::json& j) { j.erase("snapshot"); }) == kPath + ": missing field snapshot");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"].erase("bytes"); }) ==
        kPath + ": missing field snapshot.bytes");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["segments"][1].erase("size"); }) ==
        kPath + ": missing field log.segments[1].size");
  CHECK(error_after([](nlohmann::json& j) { j["upstream"].erase("replid"); }) ==
        kPath + ": missing field upstream.replid");
}

TEST_CASE("manifest: a field of the wrong type") {
  CHECK(error_after([](nlohmann::json& j) { j["lineage_start"] = "100"; }) ==
        kPath + ": lineage_start: must be a non-negative integer, not string \"100\"");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["offset"] = -5; }) ==
        kPath + ": snapshot.offset: must be a non-negative integer, not number -5");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["segments"][0]["size"] = 1.5; }) ==
        kPath + ": log.segments[0].size: must be a non-negative integer, not number 1.5");
  CHECK(error_after([](nlohmann::json& j) { j["second_offset"] = 9223372036854775808ull; }) ==
        kPath + ": second_offset: 9223372036854775808 is too large");
  CHECK(error_after([](nlohmann::json& j) { j["log"] = 3; }) == kPath + ": log: must be an object, not number 3");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["segments"] = nlohmann::json::object(); }) ==
        kPath + ": log.segments: must be an array, not object {}");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"] = "x"; }) ==
        kPath + ": snapshot: must be an object or null, not string \"x\"");
  CHECK(error_after([](nlohmann::json& j) { j["replid"] = nullptr; }) ==
        kPath + ": replid: must be a string, not null null");
  // A number too large for 64 bits is parsed as a float.
  CHECK(error_of(std::string(R"({"format": 1, "replid": "", "replid2": ")") + std::string(40, '0') +
                 R"(", "second_offset": -1, "lineage_start": 99999999999999999999999})")
            .starts_with(kPath + ": lineage_start: must be a non-negative integer, not number 9.99"));
}

TEST_CASE("manifest: segments not contiguous, not in order, not where the log starts") {
  CHECK(error_after([](nlohmann::json& j) {
          j["log"]["segments"][1]["first_offset"] = 502;
          j["log"]["segments"][1]["file"] = segment_file_name(502);
        }) ==
        kPath + ": log.segments[1]: starts at 502, but log.segments[0] ends at 500: "
                "the segments are not contiguous (a gap)");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["segments"][0]["size"] = 401; }) ==
        kPath + ": log.segments[1]: starts at 501, but log.segments[0] ends at 501: "
                "the segments are not contiguous (an overlap)");
  CHECK(error_after([](nlohmann::json& j) {
          auto& segs = j["log"]["segments"];
          std::swap(segs[1], segs[2]);
        }) == kPath + ": log.segments[2]: starts at 501, before log.segments[1] (at 1501): "
                      "the segments are not in order");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["first_offset"] = 100; }) ==
        kPath + ": log.segments[0]: starts at 101, but log.first_offset is 100");
  CHECK(error_after([](nlohmann::json& j) {
          j["log"]["segments"][1]["size"] = 0;
          j["log"]["segments"][2]["first_offset"] = 501;
          j["log"]["segments"][2]["file"] = segment_file_name(501);
        }) == kPath + ": log.segments[1]: empty, but not the last segment");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["first_offset"] = 0; }) ==
        kPath + ": log.first_offset: 0 (offsets start at 1)");
}

TEST_CASE("manifest: file names are plain names in the data directory") {
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["file"] = "../etc/passwd"; }) ==
        kPath + ": snapshot.file: \"../etc/passwd\" is not a plain file name in the data directory");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["file"] = ".."; }) ==
        kPath + ": snapshot.file: \"..\" is not a plain file name in the data directory");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["file"] = ""; }) ==
        kPath + ": snapshot.file: \"\" is not a plain file name in the data directory");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["file"] = "a\nb"; }) ==
        kPath + ": snapshot.file: \"a\\x0ab\" is not a plain file name in the data directory");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["segments"][0]["file"] = "sub/" + segment_file_name(101); }) ==
        kPath + ": log.segments[0].file: \"sub/log-00000000000000000101.seg\" is not a plain file name "
                "in the data directory");
  CHECK(error_after([](nlohmann::json& j) { j["log"]["segments"][0]["file"] = "log-101.seg"; }) ==
        kPath + ": log.segments[0].file: \"log-101.seg\" is not the name of a segment starting at 101 "
                "(log-00000000000000000101.seg)");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["file"] = segment_file_name(501); }) ==
        kPath + ": snapshot.file: log-00000000000000000501.seg is also a log segment");
}

TEST_CASE("manifest: replication IDs are 40 hex digits") {
  CHECK(error_after([](nlohmann::json& j) { j["replid"] = kReplid.substr(1); }) ==
        kPath + ": replid: \"" + kReplid.substr(1) + "\" is not 40 hex digits");
  CHECK(error_after([](nlohmann::json& j) { j["replid"] = "g" + kReplid.substr(1); }) ==
        kPath + ": replid: \"g" + kReplid.substr(1) + "\" is not 40 hex digits");
  CHECK(error_after([](nlohmann::json& j) { j["replid2"] = ""; }) ==
        kPath + ": replid2: \"\" is not 40 hex digits (40 zeros for none)");
  CHECK(error_after([](nlohmann::json& j) { j["upstream"]["replid"] = "?"; }) ==
        kPath + ": upstream.replid: \"?\" is not 40 hex digits (\"\" for none)");
  CHECK(error_after([](nlohmann::json& j) { j["replid"] = ""; }) ==
        kPath + ": replid: empty, but there is a snapshot (a lineage has a replid)");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"] = nullptr; }) ==
        kPath + ": snapshot: null, but there is a replid (a lineage has a snapshot)");
  CHECK(error_after([](nlohmann::json& j) { j["replid2"] = kReplid; }) == kPath + ": replid2: the same as replid");
}

TEST_CASE("manifest: offsets that contradict each other") {
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["offset"] = 1518; }) ==
        kPath + ": snapshot.offset 1518 is past the end of the log (1517)");
  CHECK(error_after([](nlohmann::json& j) {
          j["snapshot"]["offset"] = 99;
          j["lineage_start"] = 50;
        }) == kPath + ": snapshot.offset 99: the log must go on from 100, but it starts at 101");
  CHECK(error_after([](nlohmann::json& j) { j["lineage_start"] = 1001; }) ==
        kPath + ": lineage_start 1001 is after the snapshot's offset 1000");
  CHECK(error_after([](nlohmann::json& j) {
          j["snapshot"]["offset"] = 20;
          j["lineage_start"] = 0;
          j["log"]["first_offset"] = 1;
          j["log"]["segments"] = nlohmann::json::array(
              {{{"file", segment_file_name(1)}, {"first_offset", 1}, {"size", 30}}});
        }) ==
        kPath + ": snapshot: prefix of 26 bytes, longer than its offset 20");
  CHECK(error_after([](nlohmann::json& j) { j["second_offset"] = -1; }) ==
        kPath + ": second_offset: -1 with a replid2 (an offset >= 1)");
  CHECK(error_after([](nlohmann::json& j) { j["second_offset"] = 1519; }) ==
        kPath + ": second_offset 1519 is past the end of the log (1517) + 1");
  CHECK(error_after([](nlohmann::json& j) { j["replid2"] = std::string(40, '0'); }) ==
        kPath + ": second_offset: 500, but there is no replid2 (-1 then)");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["prefix_hex"] = "abc"; }) ==
        kPath + ": snapshot.prefix_hex: odd number of hex digits");
  CHECK(error_after([](nlohmann::json& j) { j["snapshot"]["prefix_hex"] = "0x"; }) ==
        kPath + ": snapshot.prefix_hex: not a hex digit at position 1");
}

TEST_CASE("manifest: written to the directory and read back, mode 0600, no temp file left") {
  TempDir dir;
  std::string error = "stale";
  CHECK_FALSE(read_manifest(dir.path, error).has_value());
  CHECK(error == "");  // none: nothing to reopen

  write_manifest(dir.path, full_manifest());
  CHECK_FALSE(exists(dir.file("manifest.json.tmp")));
  struct stat st;
  REQUIRE(::stat(dir.file("manifest.json").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(read_file(dir.file("manifest.json")) == to_json(full_manifest()));
  auto m = read_manifest(dir.path, error);
  REQUIRE(m.has_value());
  CHECK(error == "");
  CHECK(*m == full_manifest());

  // A rewrite replaces it whole.
  Manifest second = full_manifest();
  second.segments.back().size = 500;
  second.upstream_offset += 483;
  write_manifest(dir.path, second);
  m = read_manifest(dir.path, error);
  REQUIRE(m.has_value());
  CHECK(*m == second);
  CHECK_FALSE(exists(dir.file("manifest.json.tmp")));
}

TEST_CASE("manifest: a failed write leaves the old manifest intact and no temp file") {
  TempDir dir;
  write_manifest(dir.path, full_manifest());
  Manifest second = full_manifest();
  second.upstream_offset = 1;
  {
    // The temp file cannot grow past 64 bytes: write() fails with EFBIG
    // before anything is renamed.
    FileSizeLimit limit(64);
    try {
      write_manifest(dir.path, second);
      FAIL("write_manifest did not throw");
    } catch (const LogError& e) {
      CHECK(std::string(e.what()) == dir.file("manifest.json.tmp") + ": write: " + std::strerror(EFBIG));
    }
  }
  CHECK_FALSE(exists(dir.file("manifest.json.tmp")));
  std::string error;
  auto m = read_manifest(dir.path, error);
  REQUIRE(m.has_value());
  CHECK(*m == full_manifest());

  // An inconsistent manifest is never written, so never read back.
  Manifest bad = full_manifest();
  bad.segments[1].first_offset = 600;
  CHECK_THROWS_AS(write_manifest(dir.path, bad), std::invalid_argument);
  CHECK_FALSE(exists(dir.file("manifest.json.tmp")));
  m = read_manifest(dir.path, error);
  REQUIRE(m.has_value());
  CHECK(*m == full_manifest());

  // No such directory: the error names the file.
  try {
    write_manifest(dir.file("missing"), full_manifest());
    FAIL("write_manifest did not throw");
  } catch (const LogError& e) {
    CHECK(std::string(e.what()) == dir.file("missing/manifest.json.tmp") + ": open: " + std::strerror(ENOENT));
  }
}

TEST_CASE("manifest: a bad manifest file is an error naming it, not 'none'") {
  TempDir dir;
  std::string error;
  write_file(dir.file("manifest.json"), to_json(full_manifest()).substr(0, 100));
  CHECK_FALSE(read_manifest(dir.path, error).has_value());
  CHECK(error.starts_with(dir.file("manifest.json") + ": not valid JSON: "));

  std::filesystem::remove(dir.file("manifest.json"));
  std::filesystem::create_directory(dir.file("manifest.json"));
  CHECK_FALSE(read_manifest(dir.path, error).has_value());
  CHECK(error.starts_with(dir.file("manifest.json") + ": "));
}

// ----- The commit record -----------------------------------------------------

using psync::backlog::CommitRecord;

namespace {

std::string record_error(const TempDir& dir) {
  std::string error;
  auto rec = CommitRecord::read(dir.path, error);
  CHECK_FALSE(rec.has_value());
  CHECK(error.starts_with(dir.file("commit.rec") + ": "));
  return error.substr(dir.file("commit.rec").size() + 2);
}

// The record in the file, with its checksum made right again after edit.
template <class Edit>
void rewrite_record(const TempDir& dir, Edit edit) {
  std::string bytes = read_file(dir.file("commit.rec"));
  edit(bytes);
  uint32_t crc = psync::backlog::crc32(std::string_view(bytes).substr(0, bytes.size() - 4));
  for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + i] = static_cast<char>(crc >> (8 * i));
  write_file(dir.file("commit.rec"), bytes);
}

}  // namespace

TEST_CASE("commit record: CRC-32 is the IEEE one (zlib's)") {
  CHECK(psync::backlog::crc32("123456789") == 0xCBF43926u);
  CHECK(psync::backlog::crc32("") == 0);
  CHECK(psync::backlog::crc32("56789", psync::backlog::crc32("1234")) == 0xCBF43926u);
}

TEST_CASE("commit record: written and read back, one small record, mode 0600, sequence increasing") {
  TempDir dir;
  CommitRecord rec = CommitRecord::open(dir.path);
  struct stat st;
  REQUIRE(::stat(dir.file("commit.rec").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_size == 0);  // open() writes nothing
  CHECK(rec.sequence() == 0);
  CHECK(record_error(dir) == "empty: no commit was ever recorded in it");

  rec.write(1000, 5000);
  REQUIRE(::stat(dir.file("commit.rec").c_str(), &st) == 0);
  CHECK(st.st_size == static_cast<off_t>(CommitRecord::kSize));
  CHECK(CommitRecord::kSize < 512);
  std::string error = "stale";
  auto got = CommitRecord::read(dir.path, error);
  REQUIRE(got.has_value());
  CHECK(error == "");
  CHECK(got->sequence == 1);
  CHECK(got->committed_end == 1000);
  CHECK(got->upstream_offset == 5000);
  CHECK(got->upstream_replid == "");
  CHECK(got->boot_id == CommitRecord::current_boot_id());
  CHECK(got->this_boot == (CommitRecord::current_boot_id() != CommitRecord::BootId{}));

  rec.set_upstream_replid(kUpstream);
  rec.write(1200, 5150);
  rec.sync();
  got = CommitRecord::read(dir.path, error);
  REQUIRE(got.has_value());
  CHECK(got->sequence == 2);
  CHECK(got->committed_end == 1200);
  CHECK(got->upstream_offset == 5150);
  CHECK(got->upstream_replid == kUpstream);
  REQUIRE(::stat(dir.file("commit.rec").c_str(), &st) == 0);
  CHECK(st.st_size == static_cast<off_t>(CommitRecord::kSize));  // rewritten in place
  CHECK_THROWS_AS(rec.set_upstream_replid("abc"), std::invalid_argument);

  // Moved: the new owner writes on.
  CommitRecord moved = std::move(rec);
  moved.write(1250, 5170);
  CHECK(moved.sequence() == 3);
  CHECK(CommitRecord::read(dir.path, error)->committed_end == 1250);
  moved = CommitRecord::open(dir.path);  // closes the fd it held
  CHECK(moved.sequence() == 3);

  // Reopened (a restart): the sequence goes on.
  {
    CommitRecord again = CommitRecord::open(dir.path);
    CHECK(again.sequence() == 3);
    again.write(1300, 5200);
    CHECK(again.sequence() == 4);
  }
  got = CommitRecord::read(dir.path, error);
  REQUIRE(got.has_value());
  CHECK(got->sequence == 4);
  CHECK(got->committed_end == 1300);
  CHECK(got->upstream_replid == "");  // not carried over by open(): set_upstream_replid() says it
}

TEST_CASE("commit record: a torn, cut or corrupted record is detected") {
  TempDir dir;
  CommitRecord::open(dir.path).write(77, 88);
  const std::string good = read_file(dir.file("commit.rec"));
  REQUIRE(good.size() == CommitRecord::kSize);

  SUBCASE("a flipped byte in a field") {
    std::string bytes = good;
    bytes[25] ^= 0x10;  // committed_end
    write_file(dir.file("commit.rec"), bytes);
    CHECK(record_error(dir) == "bad checksum (a torn or corrupted write)");
  }
  SUBCASE("a flipped byte in the checksum") {
    std::string bytes = good;
    bytes[CommitRecord::kSize - 1] ^= 1;
    write_file(dir.file("commit.rec"), bytes);
    CHECK(record_error(dir) == "bad checksum (a torn or corrupted write)");
  }
  SUBCASE("a torn write: the first half new, the second old") {
    CommitRecord rec = CommitRecord::open(dir.path);
    rec.write(99999, 123456);
    std::string torn = read_file(dir.file("commit.rec")).substr(0, 64) + good.substr(64);
    write_file(dir.file("commit.rec"), torn);
    CHECK(record_error(dir) == "bad checksum (a torn or corrupted write)");
  }
  SUBCASE("cut short") {
    REQUIRE(::truncate(dir.file("commit.rec").c_str(), 50) == 0);
    CHECK(record_error(dir) == "truncated: 50 of 128 bytes");
    REQUIRE(::truncate(dir.file("commit.rec").c_str(), 10) == 0);
    CHECK(record_error(dir) == "truncated: 10 bytes");
  }
  SUBCASE("zeros, as a file system may show after a crash") {
    write_file(dir.file("commit.rec"), std::string(CommitRecord::kSize, '\0'));
    CHECK(record_error(dir) == "only zero bytes (a record lost in a crash)");
  }
  SUBCASE("another file altogether") {
    write_file(dir.file("commit.rec"), to_json(full_manifest()));
    CHECK(record_error(dir) == "bad magic: not a commit record");
  }
  SUBCASE("longer than its record") {
    write_file(dir.file("commit.rec"), good + "x");
    CHECK(record_error(dir) == "129 bytes, but the record says 128");
  }
  SUBCASE("a newer version") {
    rewrite_record(dir, [](std::string& b) { b[8] = 2; });
    CHECK(record_error(dir) == "written by a newer psync-proxy (commit record version 2; this one reads 1)");
    // A version 2 record may be longer: its checksum is at the end of the size it gives.
    std::string longer = good + std::string(64, 'z');
    longer[8] = 2;
    longer[12] = static_cast<char>(192);
    write_file(dir.file("commit.rec"), longer);
    rewrite_record(dir, [](std::string&) {});
    CHECK(record_error(dir) == "written by a newer psync-proxy (commit record version 2; this one reads 1)");
  }
  SUBCASE("missing") {
    std::filesystem::remove(dir.file("commit.rec"));
    CHECK(record_error(dir) == "missing");
  }
  SUBCASE("open() of a bad record starts the sequence again, and the next write repairs it") {
    write_file(dir.file("commit.rec"), good.substr(0, 100));
    CommitRecord rec = CommitRecord::open(dir.path);
    CHECK(rec.sequence() == 0);
    rec.write(5, 6);
    std::string error;
    auto got = CommitRecord::read(dir.path, error);
    REQUIRE(got.has_value());
    CHECK(got->sequence == 1);
    CHECK(got->committed_end == 5);
  }
}

TEST_CASE("commit record: a record of another boot is not this_boot") {
  TempDir dir;
  CommitRecord::open(dir.path).write(10, 20);
  rewrite_record(dir, [](std::string& b) { b[40] ^= 0x55; });  // the boot id
  std::string error;
  auto got = CommitRecord::read(dir.path, error);
  REQUIRE(got.has_value());
  CHECK_FALSE(got->this_boot);
  CHECK(got->committed_end == 10);
}

TEST_CASE("commit record: errors name the file") {
  TempDir dir;
  try {
    CommitRecord::open(dir.file("missing"));
    FAIL("open did not throw");
  } catch (const LogError& e) {
    CHECK(std::string(e.what()) == dir.file("missing/commit.rec") + ": open: " + std::strerror(ENOENT));
  }
}

// ----- Checking the files against the manifest -------------------------------

using psync::backlog::check_files;

namespace {

// A lineage whose snapshot is at 10, its log 11..40 in two segments.
struct Lineage {
  TempDir dir;
  Manifest m;
  Lineage() {
    m.replid = kReplid;
    m.lineage_start = 10;
    m.snapshot = ManifestSnapshot{"snapshot-" + kReplid + ".rdb", 10, "", 50, 1700000000};
    m.log_first_offset = 11;
    m.segments = {{segment_file_name(11), 11, 20}, {segment_file_name(31), 31, 10}};
    write_file(dir.file(m.snapshot->file), std::string(50, 'R'));
    write_file(dir.file(segment_file_name(11)), std::string(20, 'a'));
    write_file(dir.file(segment_file_name(31)), std::string(10, 'b'));
  }
  std::string check(uint64_t committed_end) {
    std::string warnings = "stale";
    std::string error = check_files(dir.path, m, committed_end, warnings);
    if (!error.empty()) CHECK(warnings == "");
    last_warnings = warnings;
    return error;
  }
  void resize(const std::string& name, off_t size) { REQUIRE(::truncate(dir.file(name).c_str(), size) == 0); }
  std::string last_warnings;
};

}  // namespace

TEST_CASE("check files: all there") {
  Lineage l;
  CHECK(l.check(40) == "");
  CHECK(l.last_warnings == "");
}

TEST_CASE("check files: the snapshot") {
  Lineage l;
  SUBCASE("missing") {
    std::filesystem::remove(l.dir.file(l.m.snapshot->file));
    CHECK(l.check(40) ==
          l.dir.file(l.m.snapshot->file) + ": snapshot file missing (the manifest lists it with 50 bytes)");
  }
  SUBCASE("of another size") {
    l.resize(l.m.snapshot->file, 49);
    CHECK(l.check(40) == l.dir.file(l.m.snapshot->file) + ": snapshot file of 49 bytes, the manifest says 50");
    l.resize(l.m.snapshot->file, 51);
    CHECK(l.check(40) == l.dir.file(l.m.snapshot->file) + ": snapshot file of 51 bytes, the manifest says 50");
  }
  SUBCASE("not a file") {
    std::filesystem::remove(l.dir.file(l.m.snapshot->file));
    std::filesystem::create_directory(l.dir.file(l.m.snapshot->file));
    CHECK(l.check(40) == l.dir.file(l.m.snapshot->file) +
                             ": snapshot file is not a regular file (the manifest lists it with 50 bytes)");
  }
}

TEST_CASE("check files: segments before the last hold at least their size") {
  Lineage l;
  const std::string first = segment_file_name(11);
  l.resize(first, 19);
  CHECK(l.check(40) == l.dir.file(first) + ": log segment of 19 bytes, but the manifest says 20 (bytes 11..30)");
  l.resize(first, 25);  // junk past its size (a failed ftruncate): never read
  CHECK(l.check(40) == "");
  std::filesystem::remove(l.dir.file(first));
  CHECK(l.check(40) == l.dir.file(first) + ": log segment missing (the manifest lists it with bytes 11..30)");
}

TEST_CASE("check files: the last segment holds every byte up to the commit point, and may hold more") {
  Lineage l;
  const std::string last = segment_file_name(31);
  SUBCASE("longer than the commit point: a torn tail, which the caller cuts") {
    l.resize(last, 15);
    CHECK(l.check(40) == "");
  }
  SUBCASE("the log grew in it after the manifest was written") {
    l.resize(last, 15);
    CHECK(l.check(45) == "");
    l.resize(last, 25);
    CHECK(l.check(45) == "");
  }
  SUBCASE("shorter than the commit point") {
    CHECK(l.check(45) ==
          l.dir.file(last) + ": log segment of 10 bytes, but the commit point 45 needs 15 (bytes 31..45)");
    l.resize(last, 14);
    CHECK(l.check(45) ==
          l.dir.file(last) + ": log segment of 14 bytes, but the commit point 45 needs 15 (bytes 31..45)");
  }
  SUBCASE("shorter than the manifest says") {
    l.resize(last, 9);
    CHECK(l.check(40) == l.dir.file(last) + ": log segment of 9 bytes, but the manifest says 10 (bytes 31..40)");
  }
  SUBCASE("missing") {
    std::filesystem::remove(l.dir.file(last));
    CHECK(l.check(42) == l.dir.file(last) + ": log segment missing (the manifest lists it with bytes 31..42)");
  }
}

TEST_CASE("check files: a commit point the manifest cannot have") {
  Lineage l;
  CHECK(l.check(39) ==
        l.dir.file("manifest.json") +
            ": lists the log up to 40, past the commit point 39 (a commit record older than the manifest)");
  l.m.segments.clear();
  l.m.snapshot->offset = 10;
  l.m.log_first_offset = 11;
  CHECK(l.check(10) == "");
  CHECK(l.check(11) == l.dir.file("manifest.json") +
                           ": lists no log segment (the log ends at 10), but the commit point is 11");
  // Not a consistent manifest at all: never checked against the files.
  l.m.segments = {{segment_file_name(12), 12, 5}};
  CHECK(l.check(20) == l.dir.file("manifest.json") + ": log.segments[0]: starts at 12, but log.first_offset is 11");
}

TEST_CASE("check files: segment files the manifest does not list") {
  Lineage l;
  write_file(l.dir.file(segment_file_name(1)), std::string(10, 'x'));     // trimmed, unlink failed
  write_file(l.dir.file(segment_file_name(41)), std::string(3, 'x'));     // opened for bytes never committed
  write_file(l.dir.file(segment_file_name(1000)), "");
  write_file(l.dir.file("log-junk.seg"), "");
  write_file(l.dir.file("log.seg.tmp"), "");                               // not a segment name
  std::filesystem::create_directory(l.dir.file(segment_file_name(20)));  // a directory: not ours
  CHECK(l.check(40) == "");
  CHECK(l.last_warnings ==
        l.dir.path + ": log segments the manifest does not list, before the log (left from a trim): " +
            segment_file_name(1) + "; " + l.dir.path +
            ": log segments the manifest does not list, past the commit point (never committed): " +
            segment_file_name(41) + " " + segment_file_name(1000) + "; " + l.dir.path +
            ": files named like log segments, but not by psync-proxy: log-junk.seg");

  // One that starts inside the log is an error: the log is not what the manifest says.
  write_file(l.dir.file(segment_file_name(25)), std::string(16, 'y'));
  CHECK(l.check(40) == l.dir.file(segment_file_name(25)) +
                           ": a log segment the manifest does not list, starting inside the log (bytes 11..40)");
  // ... and so is one past the manifest's end that holds committed bytes (M2).
  std::filesystem::remove(l.dir.file(segment_file_name(25)));
  l.resize(segment_file_name(31), 20);
  CHECK(l.check(41) == l.dir.file(segment_file_name(41)) +
                           ": a log segment the manifest does not list, starting inside the log (bytes 11..41)");
}

TEST_CASE("check files: the segments a ReplicationLog writes are the ones the manifest names") {
  TempDir dir;
  psync::backlog::ReplicationLog log(dir.path, 10);
  log.reset(101);
  for (int i = 0; i < 3; ++i) log.append(std::string(10, static_cast<char>('a' + i)));
  log.append("tail");
  REQUIRE(log.segment_count() == 4);
  Manifest m;
  m.log_first_offset = 101;
  m.segments = {{segment_file_name(101), 101, 10}, {segment_file_name(111), 111, 10}, {segment_file_name(121), 121, 10},
                {segment_file_name(131), 131, 2}};
  std::string warnings;
  CHECK(check_files(dir.path, m, 134, warnings) == "");
  CHECK(warnings == "");
  CHECK(check_files(dir.path, m, 135, warnings) ==
        dir.file(segment_file_name(131)) +
            ": log segment of 4 bytes, but the commit point 135 needs 5 (bytes 131..135)");
}
