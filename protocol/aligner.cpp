#include "protocol/aligner.h"

#include "protocol/numbers.h"
#include "protocol/text.h"

namespace psync::protocol {

namespace {

// The largest db number SELECT accepts here (Redis reads it as an int).
constexpr int64_t kMaxDb = 2147483647;
// Digits in a count or length line: 18 always fit in int64.
constexpr size_t kMaxDigits = 18;

enum class Parse { kOk, kIncomplete, kBad };

// One multibulk command: where it ends (one past its last byte), its argument
// count and its first three arguments (all that the callers look at).
struct Head {
  size_t end = 0;
  uint64_t argc = 0;
  std::string_view arg[3];
};

// A canonical decimal ("0" or no leading zero, at most kMaxDigits digits)
// after the prefix at b[pos], then CRLF. pos moves past the CRLF.
Parse read_number(std::string_view b, size_t& pos, char prefix, uint64_t& value) {
  if (pos >= b.size()) return Parse::kIncomplete;
  if (b[pos] != prefix) return Parse::kBad;
  size_t p = pos + 1;
  const size_t digits_start = p;
  value = 0;
  while (p < b.size() && b[p] >= '0' && b[p] <= '9') {
    if (p - digits_start == kMaxDigits) return Parse::kBad;
    value = value * 10 + static_cast<uint64_t>(b[p] - '0');
    ++p;
  }
  const size_t digits = p - digits_start;
  if (digits > 1 && b[digits_start] == '0') return Parse::kBad;
  if (p == b.size()) return Parse::kIncomplete;
  if (digits == 0 || b[p] != '\r') return Parse::kBad;
  if (p + 1 == b.size()) return Parse::kIncomplete;
  if (b[p + 1] != '\n') return Parse::kBad;
  pos = p + 2;
  return Parse::kOk;
}

// Parses the command starting at b[pos]. On kBad, what says why and at is
// the index the problem is at.
Parse parse_command(std::string_view b, size_t pos, Head& head, std::string& what, size_t& at) {
  size_t p = pos;
  at = p;
  uint64_t argc = 0;
  Parse r = read_number(b, p, '*', argc);
  if (r == Parse::kBad) {
    what = b[p] == '*' ? "bad multibulk count line" : "expected '*', got " + quoted(b.substr(p, 1));
    return r;
  }
  if (r != Parse::kOk) return r;
  if (argc == 0) {
    what = "empty multibulk command (*0)";
    return Parse::kBad;
  }
  head.argc = argc;
  for (uint64_t i = 0; i < argc; ++i) {
    at = p;
    uint64_t len = 0;
    r = read_number(b, p, '$', len);
    if (r == Parse::kBad) {
      what = b[p] == '$' ? "bad bulk length line" : "expected '$', got " + quoted(b.substr(p, 1));
      return r;
    }
    if (r != Parse::kOk) return r;
    if (len > b.size() - p || b.size() - p - len < 2) return Parse::kIncomplete;
    if (i < 3) head.arg[i] = b.substr(p, len);
    p += len;
    if (b[p] != '\r' || b[p + 1] != '\n') {
      at = p;
      what = "bulk argument not followed by CRLF";
      return Parse::kBad;
    }
    p += 2;
  }
  head.end = p;
  return Parse::kOk;
}

// A db number as SELECT takes it: canonical decimal, 0..kMaxDb.
std::optional<int64_t> parse_db(std::string_view s) {
  if (s.empty() || s.size() > 10 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  std::optional<int64_t> v = parse_i64(s);
  if (!v || *v > kMaxDb) return std::nullopt;
  return v;
}

std::string at_offset(uint64_t offset) { return " at offset " + std::to_string(offset); }

// The command name of an already split command, or empty.
std::string_view command_name(std::string_view cmd_bytes) {
  Head head;
  std::string what;
  size_t at = 0;
  if (parse_command(cmd_bytes, 0, head, what, at) != Parse::kOk) return {};
  return head.arg[0];
}

}  // namespace

bool split_commands(std::string_view bytes, uint64_t first_offset, int64_t& db, std::vector<StreamCommand>& out,
                    std::string& error) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    Head head;
    std::string what;
    size_t at = 0;
    const Parse r = parse_command(bytes, pos, head, what, at);
    if (r == Parse::kIncomplete) {
      error = "incomplete command" + at_offset(first_offset + pos) + " (the window must hold whole commands)";
      return false;
    }
    if (r == Parse::kBad) {
      error = what + at_offset(first_offset + at);
      return false;
    }
    const std::string_view name = head.arg[0];
    if (iequals(name, "ping")) {
      // dropped: each link has its own
    } else if (iequals(name, "select")) {
      if (head.argc != 2) {
        error = "SELECT with " + std::to_string(head.argc - 1) + " arguments" + at_offset(first_offset + pos);
        return false;
      }
      const std::optional<int64_t> n = parse_db(head.arg[1]);
      if (!n) {
        error = "SELECT" + at_offset(first_offset + pos) + ": " + quoted(head.arg[1]) + " is not a db number";
        return false;
      }
      db = *n;
    } else {
      out.push_back(StreamCommand{bytes.substr(pos, head.end - pos), db, first_offset + head.end - 1});
    }
    pos = head.end;
  }
  return true;
}

std::optional<std::string_view> marker_nonce(std::string_view cmd_bytes, std::string_view channel) {
  Head head;
  std::string what;
  size_t at = 0;
  // The count first: a large command is not parsed through.
  if (cmd_bytes.substr(0, 4) != "*3\r\n") return std::nullopt;
  if (parse_command(cmd_bytes, 0, head, what, at) != Parse::kOk || head.end != cmd_bytes.size()) return std::nullopt;
  if (!iequals(head.arg[0], "publish") || head.arg[1] != channel) return std::nullopt;
  return head.arg[2];
}

bool is_marker(std::string_view cmd_bytes, std::string_view channel, std::string_view nonce) {
  const std::optional<std::string_view> got = marker_nonce(cmd_bytes, channel);
  return got && *got == nonce;
}

Alignment align(const std::vector<StreamCommand>& live, uint64_t live_start, int64_t live_start_db,
                const std::vector<StreamCommand>& fresh, std::string_view channel, std::string_view nonce) {
  Alignment a;
  auto fail = [&a](AlignError e, std::string why) {
    a.ok = false;
    a.error = e;
    a.reason = std::move(why);
    return a;
  };
  const std::string marker = "marker " + quoted(nonce);

  // Both windows end with marker k.
  if (fresh.empty()) return fail(AlignError::kFreshNoMarker, "the new link's window is empty, it must end with " + marker);
  if (!is_marker(fresh.back().bytes, channel, nonce))
    return fail(AlignError::kFreshNoMarker, "the new link's window ends with " + quoted(fresh.back().bytes) +
                                                at_offset(fresh.back().end) + ", not with " + marker);
  if (live.empty()) return fail(AlignError::kLiveNoMarker, "the live window is empty, it must end with " + marker);
  if (!is_marker(live.back().bytes, channel, nonce))
    return fail(AlignError::kLiveNoMarker, "the live window ends with " + quoted(live.back().bytes) +
                                               at_offset(live.back().end) + ", not with " + marker);

  // Marker k is the first marker on the new link, and the live window holds
  // no marker but k: it starts right after marker k-1.
  for (size_t i = 0; i + 1 < fresh.size(); ++i) {
    if (const auto other = marker_nonce(fresh[i].bytes, channel))
      return fail(AlignError::kEarlierMarkerInFresh,
                  "the new link carries marker " + quoted(*other) + " (its command " + std::to_string(i) + ", ending" +
                      at_offset(fresh[i].end) + ") before " + marker + ": marker k is not its first marker");
  }
  for (size_t i = 0; i + 1 < live.size(); ++i) {
    if (const auto other = marker_nonce(live[i].bytes, channel))
      return fail(AlignError::kMarkerInLive, "the live window holds marker " + quoted(*other) + at_offset(live[i].end) +
                                                 " before " + marker + ": it must start right after marker k-1");
  }

  // The fork lies after marker k-1: the new link cannot have more commands.
  if (fresh.size() > live.size())
    return fail(AlignError::kFreshLonger,
                "the new link has " + std::to_string(fresh.size()) + " commands through " + marker +
                    ", the live window only " + std::to_string(live.size()) +
                    " since marker k-1: its fork was before marker k-1 (a copy of another replica's output buffer?)");

  // fresh[i] must be live[base + i], the same bytes in the same db.
  const size_t base = live.size() - fresh.size();
  for (size_t i = 0; i < fresh.size(); ++i) {
    const StreamCommand& f = fresh[i];
    const StreamCommand& l = live[base + i];
    a.matched = i;
    const std::string which = "command " + std::to_string(i) + " of the new link (ending" + at_offset(f.end) + ")";
    if (f.bytes != l.bytes)
      return fail(AlignError::kCommandDiffers, which + " is " + quoted(f.bytes) + ", the live command ending" +
                                                   at_offset(l.end) + " is " + quoted(l.bytes));
    if (f.db != l.db)
      return fail(AlignError::kOtherDb,
                  which + " is the live command ending" + at_offset(l.end) + " but runs in db " + std::to_string(f.db) +
                      ", not db " + std::to_string(l.db) +
                      ": the new link's assumed db is wrong (a copy of another replica's output buffer, whose "
                      "selected db is not copied?)");
  }
  a.matched = fresh.size();

  // A transaction reaches the stream in one event-loop pass; a fork cannot
  // fall between its MULTI and its EXEC.
  const StreamCommand* open_multi = nullptr;
  for (size_t i = 0; i < base; ++i) {
    const std::string_view name = command_name(live[i].bytes);
    if (iequals(name, "multi")) open_multi = &live[i];
    else if (iequals(name, "exec")) open_multi = nullptr;
  }
  if (open_multi)
    return fail(AlignError::kInsideMulti, "the fork would fall inside the transaction whose MULTI ends" +
                                              at_offset(open_multi->end) + ", before its EXEC");

  a.ok = true;
  a.error = AlignError::kNone;
  if (base == 0) {
    a.offset = live_start;
    a.db = live_start_db;
  } else {
    a.offset = live[base - 1].end;
    a.db = live[base - 1].db;
  }
  return a;
}

}  // namespace psync::protocol
