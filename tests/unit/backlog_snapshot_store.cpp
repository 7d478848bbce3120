#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/unit/backlog_fixtures.h"
#include "backlog/snapshot_store.h"

using psync::backlog::clean_data_dir;
using psync::backlog::LogError;
using psync::backlog::Snapshot;
using psync::backlog::SnapshotWriter;

using backlog_test::FileSizeLimit;
using backlog_test::TempDir;

namespace {

const std::string kReplid = "8f3c0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b";

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string read_fd(int fd, uint64_t size) {
  std::string out(size, '\0');
  ssize_t n = ::pread(fd, out.data(), size, 0);
  REQUIRE(n == static_cast<ssize_t>(size));
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("snapshot: write and commit") {
  TempDir dir;
  const std::string tmp = dir.file("snapshot.rdb.tmp");
  const std::string final_path = dir.file("snapshot-" + kReplid + ".rdb");
  std::string rdb = "REDIS0006";
  for (int i = 0; i < 1000; ++i) rdb += static_cast<char>(i);

  SnapshotWriter writer(dir.path);
  CHECK(exists(tmp));
  struct stat st;
  REQUIRE(::stat(tmp.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);

  writer.write(std::string_view(rdb).substr(0, 9));
  writer.write(std::string_view(rdb).substr(9));
  writer.write("");
  CHECK(writer.bytes() == rdb.size());

  int64_t before = static_cast<int64_t>(time(nullptr));
  std::shared_ptr<Snapshot> snap = writer.commit(kReplid, 1000);
  int64_t after = static_cast<int64_t>(time(nullptr));
  REQUIRE(snap != nullptr);
  CHECK(snap->path() == final_path);
  CHECK(snap->size() == rdb.size());
  CHECK(snap->offset() == 1000);
  CHECK(snap->replid() == kReplid);
  CHECK(snap->created_unix() >= before);
  CHECK(snap->created_unix() <= after);
  CHECK_FALSE(exists(tmp));
  REQUIRE(::stat(final_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(static_cast<uint64_t>(st.st_size) == rdb.size());
  CHECK(read_file(final_path) == rdb);

  REQUIRE(snap->fd() >= 0);
  CHECK((fcntl(snap->fd(), F_GETFL) & O_ACCMODE) == O_RDONLY);
  CHECK((fcntl(snap->fd(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(read_fd(snap->fd(), snap->size()) == rdb);

  // Committed: abort() and the destructor leave the snapshot alone.
  writer.abort();
  CHECK(exists(final_path));
  CHECK_THROWS_AS(writer.write("x"), std::logic_error);
  CHECK_THROWS_AS(writer.commit(kReplid, 1), std::logic_error);
}

TEST_CASE("snapshot: the writer's destructor keeps a committed snapshot") {
  TempDir dir;
  std::shared_ptr<Snapshot> snap;
  {
    SnapshotWriter writer(dir.path);
    writer.write("RDB");
    snap = writer.commit(kReplid, 0);
  }
  CHECK(exists(snap->path()));
  CHECK(read_file(snap->path()) == "RDB");
  CHECK(snap->offset() == 0);
}

TEST_CASE("snapshot: an empty snapshot can be committed") {
  TempDir dir;
  SnapshotWriter writer(dir.path);
  auto snap = writer.commit(kReplid, 5);
  CHECK(snap->size() == 0);
  CHECK(exists(snap->path()));
}

TEST_CASE("snapshot: abort removes the temp file and is idempotent") {
  TempDir dir;
  const std::string tmp = dir.file("snapshot.rdb.tmp");
  SnapshotWriter writer(dir.path);
  writer.write("partial");
  writer.abort();
  CHECK_FALSE(exists(tmp));
  writer.abort();
  CHECK_FALSE(exists(tmp));
  CHECK_THROWS_AS(writer.write("x"), std::logic_error);
  CHECK(std::filesystem::is_empty(dir.path));
}

TEST_CASE("snapshot: the destructor removes an uncommitted temp file") {
  TempDir dir;
  {
    SnapshotWriter writer(dir.path);
    writer.write("interrupted download");
    CHECK(exists(dir.file("snapshot.rdb.tmp")));
  }
  CHECK(std::filesystem::is_empty(dir.path));
}

TEST_CASE("snapshot: a stale temp file is truncated") {
  TempDir dir;
  std::ofstream(dir.file("snapshot.rdb.tmp")) << "stale bytes from an earlier run";
  SnapshotWriter writer(dir.path);
  writer.write("new");
  auto snap = writer.commit(kReplid, 1);
  CHECK(read_file(snap->path()) == "new");
  CHECK(snap->size() == 3);
  struct stat st;
  REQUIRE(::stat(snap->path().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
}

TEST_CASE("snapshot: the writer throws LogError when the directory is missing") {
  try {
    SnapshotWriter writer("/tmp/psync-snapshot-does-not-exist/nowhere");
    FAIL("no exception");
  } catch (const LogError& e) {
    std::string message = e.what();
    CHECK(message.find("/tmp/psync-snapshot-does-not-exist/nowhere/snapshot.rdb.tmp") !=
          std::string::npos);
    CHECK(message.find(std::strerror(ENOENT)) != std::string::npos);
  }
}

TEST_CASE("snapshot: discard unlinks the file and open readers go on") {
  TempDir dir;
  SnapshotWriter writer(dir.path);
  writer.write("RDB bytes");
  auto snap = writer.commit(kReplid, 77);
  std::string path = snap->path();
  snap->discard();
  CHECK_FALSE(exists(path));
  CHECK(read_fd(snap->fd(), snap->size()) == "RDB bytes");
  snap->discard();  // again: nothing to do
}

TEST_CASE("snapshot: discard leaves a newer snapshot renamed over the same path") {
  TempDir dir;
  SnapshotWriter first(dir.path);
  first.write("old");
  auto old_snap = first.commit(kReplid, 1);
  SnapshotWriter second(dir.path);
  second.write("newer");
  auto new_snap = second.commit(kReplid, 2);
  REQUIRE(old_snap->path() == new_snap->path());
  old_snap->discard();
  CHECK(exists(new_snap->path()));
  CHECK(read_file(new_snap->path()) == "newer");
  CHECK(read_fd(old_snap->fd(), old_snap->size()) == "old");
}

TEST_CASE("snapshot: a failed write throws LogError naming the path and the error") {
  TempDir dir;
  const std::string tmp = dir.file("snapshot.rdb.tmp");
  SnapshotWriter writer(dir.path);
  writer.write(std::string(50, 'x'));
  bool thrown = false;
  std::string message;
  {
    FileSizeLimit limit(100);
    try {
      writer.write(std::string(200, 'y'));
    } catch (const LogError& e) {
      thrown = true;
      message = e.what();
    }
  }
  CHECK(thrown);
  CHECK(message.find(tmp) != std::string::npos);
  CHECK(message.find(std::strerror(EFBIG)) != std::string::npos);
  CHECK(writer.bytes() == 100);  // the partial write is counted
  writer.abort();
  CHECK_FALSE(exists(tmp));
}

TEST_CASE("snapshot: a failed commit removes the temp file and throws LogError") {
  TempDir dir;
  const std::string tmp = dir.file("snapshot.rdb.tmp");

  SUBCASE("rename fails") {
    // A non-empty directory in the way of the final name.
    std::filesystem::create_directory(dir.file("snapshot-" + kReplid + ".rdb"));
    std::ofstream(dir.file("snapshot-" + kReplid + ".rdb/inside")) << "x";
    SnapshotWriter writer(dir.path);
    writer.write("RDB");
    CHECK_THROWS_AS(writer.commit(kReplid, 1), LogError);
    CHECK_FALSE(exists(tmp));
    CHECK_THROWS_AS(writer.write("x"), std::logic_error);
  }

  SUBCASE("the replid cannot be a file name") {
    SnapshotWriter writer(dir.path);
    writer.write("RDB");
    CHECK_THROWS_AS(writer.commit("../escape", 1), LogError);
    CHECK_FALSE(exists(tmp));
    CHECK(std::filesystem::is_empty(dir.path));
  }

  SUBCASE("empty replid") {
    SnapshotWriter writer(dir.path);
    CHECK_THROWS_AS(writer.commit("", 1), LogError);
    CHECK(std::filesystem::is_empty(dir.path));
  }
}

TEST_CASE("clean_data_dir removes snapshots, temp files and segments only") {
  TempDir dir;
  for (const char* name : {"snapshot-abc.rdb", "snapshot-8f3c0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b.rdb",
                           "snapshot.rdb.tmp", "other.tmp", "log-00000000000000000001.seg",
                           "log-00000000000000000100.seg"}) {
    std::ofstream(dir.file(name)) << "x";
  }
  for (const char* name : {"dump.rdb", "snapshot.rdb", "notes.txt", "log-1.txt", "proxy.conf"}) {
    std::ofstream(dir.file(name)) << "keep";
  }
  std::filesystem::create_directory(dir.file("sub"));
  std::ofstream(dir.file("sub/log-00000000000000000001.seg")) << "keep";
  std::filesystem::create_directory(dir.file("snapshot-dir.rdb"));
  std::filesystem::create_directory(dir.file("dir.tmp"));

  CHECK(clean_data_dir(dir.path) == 6);
  size_t left = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    (void)e;
    ++left;
  }
  CHECK(left == 8);
  CHECK(exists(dir.file("dump.rdb")));
  CHECK(exists(dir.file("snapshot.rdb")));
  CHECK(exists(dir.file("notes.txt")));
  CHECK(exists(dir.file("log-1.txt")));
  CHECK(exists(dir.file("proxy.conf")));
  CHECK(exists(dir.file("sub/log-00000000000000000001.seg")));
  CHECK(exists(dir.file("snapshot-dir.rdb")));
  CHECK(exists(dir.file("dir.tmp")));
  CHECK_FALSE(exists(dir.file("snapshot.rdb.tmp")));

  CHECK(clean_data_dir(dir.path) == 0);
  CHECK_THROWS_AS(clean_data_dir(dir.file("missing")), LogError);
}
