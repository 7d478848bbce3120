#include "backlog/manifest.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

namespace psync::backlog {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr const char* kManifestName = "manifest.json";
constexpr const char* kManifestTmpName = "manifest.json.tmp";
// A manifest of a 1 TB log in 64 MB segments is about 2 MB.
constexpr off_t kMaxManifestBytes = 64 << 20;

[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw LogError(path + ": " + what + ": " + std::strerror(err));
}

// Opens dir and fsyncs it, so that a rename in it is durable.
int fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return err;
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool is_replid(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!is_hex(c)) return false;
  }
  return true;
}

bool all_zeros(const std::string& s) { return s.find_first_not_of('0') == std::string::npos; }

// A name of a file directly in the data directory: printable ASCII (so that
// it goes into JSON and log lines as it is), no '/', not "." or "..".
bool is_plain_name(const std::string& s) {
  if (s.empty() || s.size() > NAME_MAX || s == "." || s == "..") return false;
  for (char c : s) {
    if (c < 0x20 || c > 0x7e || c == '/') return false;
  }
  return true;
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  return out + "\"";
}

std::string to_hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string u(uint64_t v) { return std::to_string(v); }

// ----- JSON to Manifest: types and presence --------------------------------

struct Bad {
  std::string what;
};

std::string join(const std::string& where, const std::string& key) {
  return where.empty() ? key : where + "." + key;
}

std::string describe(const json& v) {
  std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(v.type_name()) + " " + text;
}

const json& field(const json& obj, const std::string& where, const std::string& key) {
  auto it = obj.find(key);
  if (it == obj.end()) throw Bad{"missing field " + join(where, key)};
  return *it;
}

const json& object_field(const json& obj, const std::string& where, const std::string& key) {
  const json& v = field(obj, where, key);
  if (!v.is_object()) throw Bad{join(where, key) + ": must be an object, not " + describe(v)};
  return v;
}

uint64_t u64_field(const json& obj, const std::string& where, const std::string& key) {
  const json& v = field(obj, where, key);
  if (!v.is_number_unsigned()) throw Bad{join(where, key) + ": must be a non-negative integer, not " + describe(v)};
  return v.get<uint64_t>();
}

int64_t i64_field(const json& obj, const std::string& where, const std::string& key) {
  const json& v = field(obj, where, key);
  if (v.is_number_unsigned()) {
    uint64_t x = v.get<uint64_t>();
    if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw Bad{join(where, key) + ": " + u(x) + " is too large"};
    }
    return static_cast<int64_t>(x);
  }
  if (!v.is_number_integer()) throw Bad{join(where, key) + ": must be an integer, not " + describe(v)};
  return v.get<int64_t>();
}

std::string string_field(const json& obj, const std::string& where, const std::string& key) {
  const json& v = field(obj, where, key);
  if (!v.is_string()) throw Bad{join(where, key) + ": must be a string, not " + describe(v)};
  return v.get<std::string>();
}

Manifest from_json(const json& top) {
  if (!top.is_object()) throw Bad{"not a manifest: the JSON is " + describe(top) + ", not an object"};
  // The version first: a newer format may have other fields altogether.
  const json& format = field(top, "", "format");
  if (!format.is_number_integer()) throw Bad{"format: must be an integer, not " + describe(format)};
  if (format.is_number_unsigned() && format.get<uint64_t>() > static_cast<uint64_t>(Manifest::kFormat)) {
    throw Bad{"written by a newer psync-proxy (format " + u(format.get<uint64_t>()) + "; this one reads " +
              std::to_string(Manifest::kFormat) + ")"};
  }
  if (format.get<int64_t>() != Manifest::kFormat) {
    throw Bad{"unknown format version " + std::to_string(format.get<int64_t>()) + " (this one reads " +
              std::to_string(Manifest::kFormat) + ")"};
  }

  Manifest m;
  m.format = Manifest::kFormat;
  m.replid = string_field(top, "", "replid");
  m.replid2 = string_field(top, "", "replid2");
  m.second_offset = i64_field(top, "", "second_offset");
  m.lineage_start = u64_field(top, "", "lineage_start");

  const json& snap = field(top, "", "snapshot");
  if (!snap.is_null()) {
    if (!snap.is_object()) throw Bad{"snapshot: must be an object or null, not " + describe(snap)};
    ManifestSnapshot s;
    s.file = string_field(snap, "snapshot", "file");
    s.offset = u64_field(snap, "snapshot", "offset");
    std::string hex = string_field(snap, "snapshot", "prefix_hex");
    if (hex.size() % 2 != 0) throw Bad{"snapshot.prefix_hex: odd number of hex digits"};
    for (size_t i = 0; i < hex.size(); i += 2) {
      int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
      if (hi < 0 || lo < 0) throw Bad{"snapshot.prefix_hex: not a hex digit at position " + u(hi < 0 ? i : i + 1)};
      s.prefix += static_cast<char>(hi * 16 + lo);
    }
    s.bytes = u64_field(snap, "snapshot", "bytes");
    s.created_unix = i64_field(snap, "snapshot", "created_unix");
    m.snapshot = std::move(s);
  }

  const json& log = object_field(top, "", "log");
  m.log_first_offset = u64_field(log, "log", "first_offset");
  const json& segments = field(log, "log", "segments");
  if (!segments.is_array()) throw Bad{"log.segments: must be an array, not " + describe(segments)};
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string where = "log.segments[" + u(i) + "]";
    const json& seg = segments[i];
    if (!seg.is_object()) throw Bad{where + ": must be an object, not " + describe(seg)};
    ManifestSegment s;
    s.file = string_field(seg, where, "file");
    s.first_offset = u64_field(seg, where, "first_offset");
    s.size = u64_field(seg, where, "size");
    m.segments.push_back(std::move(s));
  }

  const json& up = object_field(top, "", "upstream");
  m.upstream_replid = string_field(up, "upstream", "replid");
  m.upstream_offset = u64_field(up, "upstream", "offset");
  return m;
}

}  // namespace

// ----- The manifest ----------------------------------------------------------

uint64_t log_end(const Manifest& m) {
  if (m.segments.empty()) return m.log_first_offset - 1;
  const ManifestSegment& last = m.segments.back();
  return last.first_offset + last.size - 1;
}

std::string segment_file_name(uint64_t first_offset) {
  char name[64];
  std::snprintf(name, sizeof name, "log-%020llu.seg", static_cast<unsigned long long>(first_offset));
  return name;
}

std::string validate_manifest(const Manifest& m) {
  if (m.format != Manifest::kFormat) {
    return "format " + std::to_string(m.format) + ": this one reads " + std::to_string(Manifest::kFormat);
  }
  // Identities.
  if (!m.replid.empty() && !is_replid(m.replid)) {
    return "replid: " + quoted(m.replid) + " is not 40 hex digits";
  }
  if (m.replid.empty() != !m.snapshot) {
    return m.snapshot ? "replid: empty, but there is a snapshot (a lineage has a replid)"
                      : "snapshot: null, but there is a replid (a lineage has a snapshot)";
  }
  if (!is_replid(m.replid2)) return "replid2: " + quoted(m.replid2) + " is not 40 hex digits (40 zeros for none)";
  if (!m.upstream_replid.empty() && !is_replid(m.upstream_replid)) {
    return "upstream.replid: " + quoted(m.upstream_replid) + " is not 40 hex digits (\"\" for none)";
  }

  // The log.
  if (m.log_first_offset == 0) return "log.first_offset: 0 (offsets start at 1)";
  std::set<std::string> names;
  for (size_t i = 0; i < m.segments.size(); ++i) {
    const ManifestSegment& s = m.segments[i];
    const std::string where = "log.segments[" + u(i) + "]";
    if (!is_plain_name(s.file)) {
      return where + ".file: " + quoted(s.file) + " is not a plain file name in the data directory";
    }
    if (s.file != segment_file_name(s.first_offset)) {
      return where + ".file: " + quoted(s.file) + " is not the name of a segment starting at " +
             u(s.first_offset) + " (" + segment_file_name(s.first_offset) + ")";
    }
    if (!names.insert(s.file).second) return where + ".file: " + s.file + " is listed twice";
    if (s.size > std::numeric_limits<uint64_t>::max() - s.first_offset) {
      return where + ": first_offset " + u(s.first_offset) + " + size " + u(s.size) + " overflows";
    }
    // (An empty segment followed by another would share its name.)
    if (s.size == 0 && i + 1 < m.segments.size()) return where + ": empty, but not the last segment";
    if (i > 0 && s.first_offset < m.segments[i - 1].first_offset) {
      return where + ": starts at " + u(s.first_offset) + ", before log.segments[" + u(i - 1) + "] (at " +
             u(m.segments[i - 1].first_offset) + "): the segments are not in order";
    }
  }
  for (size_t i = 0; i < m.segments.size(); ++i) {
    const ManifestSegment& s = m.segments[i];
    const std::string where = "log.segments[" + u(i) + "]";
    const uint64_t expected = i == 0 ? m.log_first_offset : m.segments[i - 1].first_offset + m.segments[i - 1].size;
    if (s.first_offset == expected) continue;
    if (i == 0) {
      return where + ": starts at " + u(s.first_offset) + ", but log.first_offset is " + u(m.log_first_offset);
    }
    return where + ": starts at " + u(s.first_offset) + ", but log.segments[" + u(i - 1) + "] ends at " +
           u(expected - 1) + ": the segments are not contiguous (" +
           (s.first_offset > expected ? "a gap" : "an overlap") + ")";
  }
  const uint64_t end = log_end(m);

  // The snapshot and the lineage.
  if (m.snapshot) {
    const ManifestSnapshot& s = *m.snapshot;
    if (!is_plain_name(s.file)) {
      return "snapshot.file: " + quoted(s.file) + " is not a plain file name in the data directory";
    }
    if (names.count(s.file)) return "snapshot.file: " + s.file + " is also a log segment";
    if (s.prefix.size() > s.offset) {
      return "snapshot: prefix of " + u(s.prefix.size()) + " bytes, longer than its offset " + u(s.offset);
    }
    if (s.offset > end) {
      return "snapshot.offset " + u(s.offset) + " is past the end of the log (" + u(end) + ")";
    }
    if (s.offset + 1 < m.log_first_offset) {
      return "snapshot.offset " + u(s.offset) + ": the log must go on from " + u(s.offset + 1) +
             ", but it starts at " + u(m.log_first_offset);
    }
    if (m.lineage_start > s.offset) {
      return "lineage_start " + u(m.lineage_start) + " is after the snapshot's offset " + u(s.offset);
    }
  }
  if (all_zeros(m.replid2)) {
    if (m.second_offset != -1) {
      return "second_offset: " + std::to_string(m.second_offset) + ", but there is no replid2 (-1 then)";
    }
  } else {
    if (m.second_offset < 1) {
      return "second_offset: " + std::to_string(m.second_offset) + " with a replid2 (an offset >= 1)";
    }
    if (static_cast<uint64_t>(m.second_offset) > end + 1) {
      return "second_offset " + std::to_string(m.second_offset) + " is past the end of the log (" + u(end) + ") + 1";
    }
    if (m.replid2 == m.replid) return "replid2: the same as replid";
  }
  return "";
}

std::string to_json(const Manifest& m) {
  ordered_json top;
  top["format"] = m.format;
  top["replid"] = m.replid;
  top["replid2"] = m.replid2;
  top["second_offset"] = m.second_offset;
  top["lineage_start"] = m.lineage_start;
  if (m.snapshot) {
    ordered_json s;
    s["file"] = m.snapshot->file;
    s["offset"] = m.snapshot->offset;
    s["prefix_hex"] = to_hex(m.snapshot->prefix);
    s["bytes"] = m.snapshot->bytes;
    s["created_unix"] = m.snapshot->created_unix;
    top["snapshot"] = std::move(s);
  } else {
    top["snapshot"] = nullptr;
  }
  ordered_json segments = ordered_json::array();
  for (const ManifestSegment& seg : m.segments) {
    ordered_json s;
    s["file"] = seg.file;
    s["first_offset"] = seg.first_offset;
    s["size"] = seg.size;
    segments.push_back(std::move(s));
  }
  top["log"]["first_offset"] = m.log_first_offset;
  top["log"]["segments"] = std::move(segments);
  top["upstream"]["replid"] = m.upstream_replid;
  top["upstream"]["offset"] = m.upstream_offset;
  // replace: a file name that is not UTF-8 (validate_manifest refuses it)
  // must not make this throw.
  return top.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

std::optional<Manifest> parse_manifest(std::string_view text, const std::string& path, std::string& error) {
  error.clear();
  // The JSON parser would take a NUL byte for the end of the input.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) {
    error = path + ": not valid JSON: a NUL byte at byte " + u(nul);
    return std::nullopt;
  }
  json top;
  try {
    top = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    if (auto pos = what.find("] "); what.starts_with("[json.exception") && pos != std::string::npos) {
      what = what.substr(pos + 2);
    }
    error = path + ": not valid JSON: " + what;
    return std::nullopt;
  }
  Manifest m;
  try {
    m = from_json(top);
  } catch (const Bad& bad) {
    error = path + ": " + bad.what;
    return std::nullopt;
  }
  if (std::string why = validate_manifest(m); !why.empty()) {
    error = path + ": " + why;
    return std::nullopt;
  }
  return m;
}

void write_manifest(const std::string& dir, const Manifest& m) {
  const std::string final_path = dir + "/" + kManifestName;
  if (std::string why = validate_manifest(m); !why.empty()) {
    throw std::invalid_argument(final_path + ": not written, the manifest is inconsistent: " + why);
  }
  const std::string text = to_json(m);
  const std::string tmp_path = dir + "/" + kManifestTmpName;

  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail(tmp_path, "open", errno);
  // Any failure before the rename: the temp file goes, the old manifest stays.
  auto fail_tmp = [&](const char* what, int err) {
    if (fd >= 0) close(fd);
    unlink(tmp_path.c_str());
    fail(tmp_path, what, err);
  };
  // A stale temp file keeps its old mode through O_TRUNC.
  if (fchmod(fd, 0600) != 0) fail_tmp("fchmod", errno);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_tmp("write", errno);
    if (n == 0) fail_tmp("write", EIO);
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) fail_tmp("fsync", errno);
  int to_close = fd;
  fd = -1;
  if (close(to_close) != 0) fail_tmp("close", errno);
  if (rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    unlink(tmp_path.c_str());
    fail(tmp_path + " -> " + final_path, "rename", err);
  }
  if (int err = fsync_dir(dir); err != 0) {
    fail(dir, "fsync directory (after renaming the new manifest into place)", err);
  }
}

std::optional<Manifest> read_manifest(const std::string& dir, std::string& error) {
  error.clear();
  const std::string path = dir + "/" + kManifestName;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) error = path + ": open: " + std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    error = path + ": fstat: " + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
  } else if (st.st_size > kMaxManifestBytes) {
    error = path + ": " + u(static_cast<uint64_t>(st.st_size)) + " bytes, too large for a manifest";
  } else {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = path + ": read: " + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > static_cast<size_t>(kMaxManifestBytes)) {
        error = path + ": too large for a manifest";
        break;
      }
    }
  }
  close(fd);
  if (!error.empty()) return std::nullopt;
  return parse_manifest(text, path, error);
}

// ----- The commit record -----------------------------------------------------

namespace {

constexpr char kMagic[8] = {'P', 'S', 'Y', 'N', 'C', 'R', 'E', 'C'};
// Where the fields of version 1 lie (see the header).
constexpr size_t kAtVersion = 8, kAtSize = 12, kAtSequence = 16, kAtEnd = 24, kAtUpstreamOffset = 32,
                 kAtBootId = 40, kAtReplidLen = 56, kAtReplid = 57, kAtCrc = CommitRecord::kSize - 4;
static_assert(kAtReplid + 40 <= kAtCrc);
// Enough to tell a record longer than any version could be.
constexpr size_t kMaxRecord = 512;

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

void put_u32(unsigned char* at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<unsigned char>(v >> (8 * i));
}
void put_u64(unsigned char* at, uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t get_u32(const unsigned char* at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | at[i];
  return v;
}
uint64_t get_u64(const unsigned char* at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | at[i];
  return v;
}

std::string_view as_chars(const unsigned char* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// The record of kSize bytes, or an error (the path is added by the caller).
std::optional<CommitRecord::Rec> decode(const unsigned char* p, size_t n, std::string& error) {
  auto bad = [&error](std::string what) {
    error = std::move(what);
    return std::nullopt;
  };
  if (n == 0) return bad("empty: no commit was ever recorded in it");
  if (n >= sizeof kMagic && std::memcmp(p, kMagic, sizeof kMagic) != 0) {
    bool zeros = true;
    for (size_t i = 0; i < n; ++i) zeros = zeros && p[i] == 0;
    return bad(zeros ? "only zero bytes (a record lost in a crash)" : "bad magic: not a commit record");
  }
  if (n < kAtSequence) return bad("truncated: " + u(n) + " bytes");
  const uint32_t version = get_u32(p + kAtVersion);
  const uint32_t size = get_u32(p + kAtSize);
  if (size < kAtSequence + 4 || size > kMaxRecord) return bad("bad record size " + u(size) + " (a corrupted record)");
  if (n < size) return bad("truncated: " + u(n) + " of " + u(size) + " bytes");
  if (n > size) return bad(u(n) + (n > kMaxRecord ? "+" : "") + " bytes, but the record says " + u(size));
  if (crc32(as_chars(p, size - 4)) != get_u32(p + size - 4)) return bad("bad checksum (a torn or corrupted write)");
  if (version > CommitRecord::kVersion) {
    return bad("written by a newer psync-proxy (commit record version " + u(version) + "; this one reads " +
               u(CommitRecord::kVersion) + ")");
  }
  if (version != CommitRecord::kVersion) return bad("unknown commit record version " + u(version));
  if (size != CommitRecord::kSize) return bad("version 1 but " + u(size) + " bytes, not " + u(CommitRecord::kSize));

  CommitRecord::Rec rec;
  rec.sequence = get_u64(p + kAtSequence);
  rec.committed_end = get_u64(p + kAtEnd);
  rec.upstream_offset = get_u64(p + kAtUpstreamOffset);
  std::memcpy(rec.boot_id.data(), p + kAtBootId, rec.boot_id.size());
  const unsigned len = p[kAtReplidLen];
  rec.upstream_replid.assign(as_chars(p + kAtReplid, len > 40 ? 40 : len));
  if ((len != 0 && len != 40) || (len == 40 && !is_replid(rec.upstream_replid))) {
    return bad("bad upstream replid in the record");
  }
  const CommitRecord::BootId now = CommitRecord::current_boot_id();
  rec.this_boot = rec.boot_id == now && now != CommitRecord::BootId{};
  return rec;
}

// Reads up to kMaxRecord + 1 bytes from offset 0.
ssize_t read_record(int fd, unsigned char* buf) {
  size_t done = 0;
  while (done < kMaxRecord + 1) {
    ssize_t n = pread(fd, buf + done, kMaxRecord + 1 - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

}  // namespace

uint32_t crc32(std::string_view bytes, uint32_t crc) {
  crc = ~crc;
  for (char c : bytes) crc = kCrcTable[(crc ^ static_cast<unsigned char>(c)) & 0xff] ^ (crc >> 8);
  return ~crc;
}

CommitRecord::BootId CommitRecord::current_boot_id() {
  BootId id{};
  int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return id;
  char text[64];
  ssize_t n;
  do {
    n = ::read(fd, text, sizeof text);
  } while (n < 0 && errno == EINTR);
  close(fd);
  // xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
  size_t digits = 0;
  for (ssize_t i = 0; i < n && text[i] != '\n'; ++i) {
    if (text[i] == '-') continue;
    int v = hex_value(text[i]);
    if (v < 0 || digits == 32) return BootId{};
    id[digits / 2] = static_cast<uint8_t>(id[digits / 2] * 16 + v);
    ++digits;
  }
  return digits == 32 ? id : BootId{};
}

CommitRecord::CommitRecord(std::string path, int fd, uint64_t sequence, BootId boot_id)
    : path_(std::move(path)), fd_(fd), sequence_(sequence), boot_id_(boot_id) {}

CommitRecord::CommitRecord(CommitRecord&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      sequence_(other.sequence_),
      boot_id_(other.boot_id_),
      upstream_replid_(std::move(other.upstream_replid_)) {}

CommitRecord& CommitRecord::operator=(CommitRecord&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    sequence_ = other.sequence_;
    boot_id_ = other.boot_id_;
    upstream_replid_ = std::move(other.upstream_replid_);
  }
  return *this;
}

CommitRecord::~CommitRecord() {
  if (fd_ >= 0) close(fd_);
}

CommitRecord CommitRecord::open(const std::string& dir) {
  std::string path = dir + "/" + kFileName;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) fail(path, "open", errno);
  // A file created earlier with another mode keeps it.
  if (fchmod(fd, 0600) != 0) {
    int err = errno;
    close(fd);
    fail(path, "fchmod", err);
  }
  unsigned char buf[kMaxRecord + 1];
  ssize_t n = read_record(fd, buf);
  if (n < 0) {
    int err = errno;
    close(fd);
    fail(path, "pread", err);
  }
  std::string ignored;
  auto rec = decode(buf, static_cast<size_t>(n), ignored);
  return CommitRecord(std::move(path), fd, rec ? rec->sequence : 0, current_boot_id());
}

void CommitRecord::set_upstream_replid(const std::string& replid) {
  if (!replid.empty() && !is_replid(replid)) {
    throw std::invalid_argument("CommitRecord: upstream replid " + quoted(replid) + " is not 40 hex digits");
  }
  upstream_replid_ = replid;
}

void CommitRecord::write(uint64_t committed_end, uint64_t upstream_offset) {
  unsigned char rec[kSize] = {};
  std::memcpy(rec, kMagic, sizeof kMagic);
  put_u32(rec + kAtVersion, kVersion);
  put_u32(rec + kAtSize, kSize);
  put_u64(rec + kAtSequence, sequence_ + 1);
  put_u64(rec + kAtEnd, committed_end);
  put_u64(rec + kAtUpstreamOffset, upstream_offset);
  std::memcpy(rec + kAtBootId, boot_id_.data(), boot_id_.size());
  rec[kAtReplidLen] = static_cast<unsigned char>(upstream_replid_.size());
  std::memcpy(rec + kAtReplid, upstream_replid_.data(), upstream_replid_.size());
  put_u32(rec + kAtCrc, crc32(as_chars(rec, kAtCrc)));
  ssize_t n;
  do {
    n = pwrite(fd_, rec, kSize, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) fail(path_, "pwrite", errno);
  if (static_cast<size_t>(n) != kSize) {
    throw LogError(path_ + ": pwrite: wrote " + u(static_cast<uint64_t>(n)) + " of " + u(kSize) + " bytes");
  }
  ++sequence_;
}

void CommitRecord::sync() {
  if (fdatasync(fd_) != 0) fail(path_, "fdatasync", errno);
}

std::optional<CommitRecord::Rec> CommitRecord::read(const std::string& dir, std::string& error) {
  error.clear();
  const std::string path = dir + "/" + kFileName;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = path + (errno == ENOENT ? ": missing" : std::string(": open: ") + std::strerror(errno));
    return std::nullopt;
  }
  unsigned char buf[kMaxRecord + 1];
  ssize_t n = read_record(fd, buf);
  int err = errno;
  close(fd);
  if (n < 0) {
    error = path + ": pread: " + std::strerror(err);
    return std::nullopt;
  }
  auto rec = decode(buf, static_cast<size_t>(n), error);
  if (!rec) error = path + ": " + error;
  return rec;
}

// ----- Checking the files against the manifest -------------------------------

namespace {

// The first offset in a name segment_file_name() makes, if it is one.
std::optional<uint64_t> segment_name_offset(const std::string& name) {
  if (name.size() != 28 || !name.starts_with("log-") || !name.ends_with(".seg")) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 4; i < 24; ++i) {
    char c = name[i];
    if (c < '0' || c > '9') return std::nullopt;
    if (v > (std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(c - '0')) / 10) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// The size of a regular file, or an error naming it.
std::optional<uint64_t> file_size(const std::string& path, const char* what, std::string& error) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    error = path + ": " + what + (errno == ENOENT ? " missing" : std::string(": stat: ") + std::strerror(errno));
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path + ": " + what + " is not a regular file";
    return std::nullopt;
  }
  return static_cast<uint64_t>(st.st_size);
}

std::string range(uint64_t first, uint64_t last) {
  return first > last ? "no bytes" : "bytes " + u(first) + ".." + u(last);
}

}  // namespace

std::string check_files(const std::string& dir, const Manifest& m, uint64_t committed_end, std::string& warnings) {
  warnings.clear();
  const std::string manifest_path = dir + "/" + kManifestName;
  if (std::string why = validate_manifest(m); !why.empty()) return manifest_path + ": " + why;
  std::string error;

  if (m.snapshot) {
    const std::string path = dir + "/" + m.snapshot->file;
    auto size = file_size(path, "snapshot file", error);
    if (!size) return error + " (the manifest lists it with " + u(m.snapshot->bytes) + " bytes)";
    if (*size != m.snapshot->bytes) {
      return path + ": snapshot file of " + u(*size) + " bytes, the manifest says " + u(m.snapshot->bytes);
    }
  }

  // Where the commit point may be: not before what the manifest lists (M1,
  // C1), inside the last segment (M2).
  const uint64_t end = log_end(m);
  if (committed_end < end) {
    return manifest_path + ": lists the log up to " + u(end) + ", past the commit point " + u(committed_end) +
           " (a commit record older than the manifest)";
  }
  if (m.segments.empty() && committed_end != end) {
    return manifest_path + ": lists no log segment (the log ends at " + u(end) + "), but the commit point is " +
           u(committed_end);
  }

  std::set<std::string> listed;
  for (size_t i = 0; i < m.segments.size(); ++i) {
    const ManifestSegment& seg = m.segments[i];
    listed.insert(seg.file);
    const std::string path = dir + "/" + seg.file;
    const bool last = i + 1 == m.segments.size();
    // The last segment must hold every committed byte, which may be more than
    // the manifest saw (the log grew in it since).
    const uint64_t need = last ? committed_end - seg.first_offset + 1 : seg.size;
    const uint64_t need_to = seg.first_offset + need - 1;
    auto size = file_size(path, "log segment", error);
    if (!size) return error + " (the manifest lists it with " + range(seg.first_offset, need_to) + ")";
    if (*size < need) {
      return path + ": log segment of " + u(*size) + " bytes, but " +
             (last && need > seg.size ? "the commit point " + u(committed_end) + " needs "
                                      : std::string("the manifest says ")) +
             u(need) + " (" + range(seg.first_offset, need_to) + ")";
    }
  }

  // Segment files the manifest does not list.
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return dir + ": opendir: " + std::strerror(errno);
  std::vector<std::string> before, after, unknown;
  std::string overlap;
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (!name.starts_with("log-") || !name.ends_with(".seg") || listed.count(name)) continue;
    struct stat st;
    if (fstatat(dirfd(d), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) continue;
    auto first = segment_name_offset(name);
    if (!first) {
      unknown.push_back(name);
    } else if (*first < m.log_first_offset) {
      before.push_back(name);
    } else if (*first > committed_end) {
      after.push_back(name);
    } else if (overlap.empty() || name < overlap) {
      overlap = name;
    }
  }
  closedir(d);
  if (!overlap.empty()) {
    return dir + "/" + overlap + ": a log segment the manifest does not list, starting inside the log (" +
           range(m.log_first_offset, committed_end) + ")";
  }
  auto note = [&warnings, &dir](std::vector<std::string>& names, const std::string& what) {
    if (names.empty()) return;
    std::sort(names.begin(), names.end());
    warnings += (warnings.empty() ? "" : "; ") + dir + ": " + what + ":";
    for (const std::string& name : names) warnings += " " + name;
  };
  note(before, "log segments the manifest does not list, before the log (left from a trim)");
  note(after, "log segments the manifest does not list, past the commit point (never committed)");
  note(unknown, "files named like log segments, but not by psync-proxy");
  return "";
}

}  // namespace psync::backlog
