#include "protocol/legacy_stream.h"
#include "protocol/text.h"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "protocol/numbers.h"
#include "protocol/reply.h"
#include "protocol/request_parser.h"

namespace psync::protocol {

namespace {

// "*<count>" and "$<len>" lines: a 64-bit number needs at most 21 bytes, so a
// longer line is garbage and is refused without waiting for its end.
constexpr size_t kMaxLengthLine = 32;

// A count or length as Redis's string2ll reads it: optional '-', digits, no
// leading zeros, no '+', no overflow.
std::optional<int64_t> parse_length(std::string_view s) {
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  if (s.size() > 1 && s[0] == '-' && s[1] == '0') return std::nullopt;
  return parse_i64(s);
}


std::string expected_dollar(char got) {
  return "expected '$', got " + quoted(std::string_view(&got, 1));
}

// The usual count or length: 1 to 18 digits without a leading zero, then
// CRLF, at p. Returns the position past the CRLF, or nullptr for anything
// else, including an incomplete line.
inline const char* read_plain_number(const char* p, const char* end, uint64_t& n) {
  if (p >= end || *p < '1' || *p > '9') return nullptr;
  n = static_cast<uint64_t>(*p++ - '0');
  const char* last = end - p > 17 ? p + 17 : end;
  while (p < last && *p >= '0' && *p <= '9') n = n * 10 + static_cast<uint64_t>(*p++ - '0');
  if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return nullptr;
  return p + 2;
}

const char* const kLengthLineTooLong[2] = {"bulk length line too long", "multibulk count line too long"};
const char* const kNoLfAfterCr[2] = {"bulk length line: CR not followed by LF",
                                     "multibulk count line: CR not followed by LF"};
constexpr const char* kNoCrlfAfterBulk = "bulk argument not followed by CRLF";

}  // namespace

LegacyStream::LegacyStream(StreamLimits limits) : limits_(limits) {}

void LegacyStream::reset() { *this = LegacyStream(limits_); }

bool LegacyStream::at_boundary() const { return !passed_partial_; }

bool LegacyStream::feed(std::string_view bytes, StreamSink& sink) {
  if (mode_ == Mode::kFailed) return false;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (mode_ == Mode::kIdle) {
      pos = scan_commands(bytes, pos, sink);
      // Stopped at a command that does not end in this feed.
      if (mode_ == Mode::kIdle && pos < bytes.size()) begin_command(bytes[pos], pos);
    } else {
      pos = continue_command(bytes, pos, sink);
    }
    if (mode_ == Mode::kFailed) return false;
  }
  bytes_in_ += bytes.size();
  return true;
}

bool LegacyStream::fail(uint64_t at, const std::string& what) {
  error_ = "protocol error in the upstream stream at byte " + std::to_string(at) + ": " + what;
  bytes_in_ = at;
  mode_ = Mode::kFailed;
  held_.clear();
  return false;
}

// ---------------------------------------------------------------------------
// The fast path: commands wholly inside `in`.

// Delivers the complete commands from in[pos] on. Consecutive multibulk
// commands go out as one span of `in`. Returns where it stopped: the end of
// `in`, the start of a command that does not end in `in`, or (with mode_ set
// to kFailed) a protocol error.
size_t LegacyStream::scan_commands(std::string_view in, size_t pos, StreamSink& sink) {
  size_t run = pos;  // start of the commands found but not delivered yet
  // fail() moves bytes_in_ to the error's position: the commands before the
  // error are delivered with their own positions, from the feed's start.
  const uint64_t feed_start = bytes_in_;
  auto deliver_run = [&] {
    if (pos > run) sink.on_stream(in.substr(run, pos - run), true, feed_start + pos);
    run = pos;
  };

  while (pos < in.size()) {
    char first = in[pos];
    if (first == '*') {
      size_t end = 0;
      Kind kind = Kind::kCommand;
      Scan scan = scan_multibulk(in, pos, end, kind);
      if (scan != Scan::kOk) break;
      if (kind == Kind::kCommand) {
        commands_++;
        pos = end;
        continue;
      }
      deliver_run();
      if (kind == Kind::kPing) sink.on_upstream_ping(bytes_in_ + end);
      pos = run = end;
    } else if (first == '$' || first == '+' || first == '-' || first == ':') {
      // A bulk or a reply where a command should be: not a master's stream.
      fail(bytes_in_ + pos, std::string("'") + first + "' where a command should start");
      break;
    } else {
      size_t window = std::min(in.size() - pos, limits_.max_inline_len) + 1;  // one past the longest line
      size_t newline = in.substr(pos, window).find('\n');
      if (newline == std::string_view::npos) {
        if (in.size() - pos > limits_.max_inline_len) {
          fail(bytes_in_ + pos, "inline command longer than " + std::to_string(limits_.max_inline_len) + " bytes");
        }
        break;
      }
      deliver_run();
      if (!handle_inline(in.substr(pos, newline), bytes_in_ + pos, sink)) break;
      pos = run = pos + newline + 1;
    }
  }
  deliver_run();
  return pos;
}

// Reads the multibulk command at in[start] ('*'). kOk: it ends at `end`.
LegacyStream::Scan LegacyStream::scan_multibulk(std::string_view in, size_t start, size_t& end, Kind& kind) {
  const char* data = in.data();
  size_t pos = start;
  // A count or length line: the usual case inline, anything else (and every
  // error) through read_length_line.
  auto read_number = [&](bool count_line, int64_t& value) {
    uint64_t limit = count_line ? limits_.max_multibulk_count : limits_.max_bulk_len;
    uint64_t n = 0;
    const char* next = read_plain_number(data + pos + 1, data + in.size(), n);
    if (next != nullptr && n <= limit) {
      value = static_cast<int64_t>(n);
      pos = static_cast<size_t>(next - data);
      return Scan::kOk;
    }
    return read_length_line(in, pos, count_line, value);
  };

  int64_t count = 0;
  Scan scan = read_number(true, count);
  if (scan != Scan::kOk) return scan;
  if (count <= 0) {
    kind = Kind::kEmpty;
    end = pos;
    return Scan::kOk;
  }
  kind = Kind::kCommand;
  // The scan is a chain of dependent loads; reading ahead keeps it from
  // waiting on memory (it doubles the speed on small commands).
  constexpr size_t kPrefetchDistance = 512;
  if (in.size() - pos > kPrefetchDistance) __builtin_prefetch(data + pos + kPrefetchDistance);
  for (int64_t i = 0; i < count; i++) {
    if (pos == in.size()) return Scan::kIncomplete;
    if (data[pos] != '$') {
      fail(bytes_in_ + pos, expected_dollar(data[pos]));
      return Scan::kError;
    }
    int64_t len = 0;
    scan = read_number(false, len);
    if (scan != Scan::kOk) return scan;
    size_t payload = static_cast<size_t>(len);
    if (in.size() - pos < payload + 2) return Scan::kIncomplete;
    if (i == 0 && payload == 4 && iequals(in.substr(pos, 4), "ping")) kind = Kind::kPing;
    pos += payload;
    if (data[pos] != '\r' || data[pos + 1] != '\n') {
      fail(bytes_in_ + pos + (data[pos] == '\r' ? 1 : 0), kNoCrlfAfterBulk);
      return Scan::kError;
    }
    pos += 2;
  }
  end = pos;
  return Scan::kOk;
}

// Reads the "*<count>" (count_line) or "$<len>" line at in[pos]; kOk: value
// is set and pos is moved past the line's CRLF.
LegacyStream::Scan LegacyStream::read_length_line(std::string_view in, size_t& pos, bool count_line,
                                                  int64_t& value) {
  std::string_view rest = in.substr(pos);
  size_t cr = rest.substr(0, kMaxLengthLine + 1).find('\r');
  if (cr == std::string_view::npos) {
    if (rest.size() <= kMaxLengthLine) return Scan::kIncomplete;
    fail(bytes_in_ + pos, kLengthLineTooLong[count_line]);
    return Scan::kError;
  }
  if (cr + 1 == rest.size()) return Scan::kIncomplete;
  if (rest[cr + 1] != '\n') {
    fail(bytes_in_ + pos, kNoLfAfterCr[count_line]);
    return Scan::kError;
  }
  if (!parse_length_line(rest.substr(0, cr), count_line, value, bytes_in_ + pos)) return Scan::kError;
  pos += cr + 2;
  return Scan::kOk;
}

// The number in a complete "*<count>" or "$<len>" line (without its CRLF).
bool LegacyStream::parse_length_line(std::string_view line, bool count_line, int64_t& value, uint64_t at) {
  auto n = parse_length(line.substr(1));
  if (count_line) {
    // Like Redis, a count <= 0 is valid: an empty command, skipped.
    if (!n || (*n > 0 && static_cast<uint64_t>(*n) > limits_.max_multibulk_count)) {
      return fail(at, "invalid multibulk length " + quoted(line));
    }
  } else {
    if (!n || *n < 0 || static_cast<uint64_t>(*n) > limits_.max_bulk_len) {
      return fail(at, "invalid bulk length " + quoted(line));
    }
  }
  value = *n;
  return true;
}

// An inline command line (without its LF): a keepalive, an inline PING, or a
// command (2.4/2.6 "select N") re-encoded as multibulk.
bool LegacyStream::handle_inline(std::string_view line, uint64_t at, StreamSink& sink) {
  const uint64_t end = at + line.size() + 1;  // past the LF
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!split_inline_args(line, inline_args_)) {
    return fail(at, "unbalanced quotes in inline command " + quoted(line));
  }
  if (inline_args_.empty() || iequals(inline_args_[0], "ping")) {
    sink.on_upstream_ping(end);
    return true;
  }
  if (iequals(inline_args_[0], "select")) inline_args_[0] = "SELECT";
  scratch_.clear();
  append_command(scratch_, inline_args_);
  commands_++;
  sink.on_stream(scratch_, true, end);
  return true;
}

// ---------------------------------------------------------------------------
// The incremental parser: one command cut by the end of a feed.

void LegacyStream::begin_command(char first, size_t pos) {
  mode_ = Mode::kHold;
  step_ = first == '*' ? Step::kCountLine : Step::kInline;
  line_start_ = bytes_in_ + pos;
  held_.clear();
  line_.clear();
  first_arg_ = false;
  name_known_ = false;
  name_.clear();
}

// Goes on with the pending command from in[pos]. Returns where it stopped:
// the end of the command (mode_ is then kIdle), the end of `in`, or an error.
size_t LegacyStream::continue_command(std::string_view in, size_t pos, StreamSink& sink) {
  piece_ = pos;
  while (pos < in.size() && mode_ != Mode::kIdle && mode_ != Mode::kFailed) {
    switch (step_) {
      case Step::kInline: {
        size_t room = limits_.max_inline_len - std::min(limits_.max_inline_len, held_.size());
        size_t newline = in.substr(pos, std::min(in.size() - pos, room) + 1).find('\n');
        size_t n = newline == std::string_view::npos ? in.size() - pos : newline;
        if (held_.size() + n > limits_.max_inline_len) {
          fail(line_start_, "inline command longer than " + std::to_string(limits_.max_inline_len) + " bytes");
          break;
        }
        held_.append(in.substr(pos, n));
        pos += n;
        if (newline == std::string_view::npos) break;
        pos++;  // LF
        mode_ = Mode::kIdle;
        handle_inline(held_, line_start_, sink);
        held_.clear();
        break;
      }

      case Step::kCountLine:
      case Step::kBulkLine: {
        bool count_line = step_ == Step::kCountLine;
        char c = in[pos];
        if (line_.empty() && !count_line) {
          line_start_ = bytes_in_ + pos;
          if (c != '$') {
            fail(bytes_in_ + pos, expected_dollar(c));
            break;
          }
        }
        take(in, pos, 1, sink);
        pos++;
        if (line_.empty() || line_.back() != '\r') {
          line_ += c;
          if (c != '\r' && line_.size() > kMaxLengthLine) fail(line_start_, kLengthLineTooLong[count_line]);
          break;
        }
        if (c != '\n') {
          fail(line_start_, kNoLfAfterCr[count_line]);
          break;
        }
        line_.pop_back();  // CR
        end_length_line();
        break;
      }

      case Step::kBulkData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(bulk_left_, in.size() - pos));
        bool reading_name = first_arg_ && !name_known_ && mode_ == Mode::kHold;
        if (reading_name) name_.append(in.substr(pos, n));
        take(in, pos, n, sink);
        pos += n;
        bulk_left_ -= n;
        if (bulk_left_ > 0) break;
        if (reading_name) {
          if (iequals(name_, "ping")) {
            mode_ = Mode::kSkip;
            held_.clear();
          } else {
            name_known_ = true;
          }
        }
        step_ = Step::kBulkCr;
        break;
      }

      case Step::kBulkCr:
      case Step::kBulkLf: {
        char expected = step_ == Step::kBulkCr ? '\r' : '\n';
        if (in[pos] != expected) {
          fail(bytes_in_ + pos, kNoCrlfAfterBulk);
          break;
        }
        take(in, pos, 1, sink);
        pos++;
        if (step_ == Step::kBulkCr) {
          step_ = Step::kBulkLf;
          break;
        }
        first_arg_ = false;
        if (--args_left_ > 0) {
          step_ = Step::kBulkLine;
        } else {
          finish_command(in, pos, sink);
        }
        break;
      }
    }
  }
  if (mode_ == Mode::kPassThrough && pos > piece_) {
    sink.on_stream(in.substr(piece_, pos - piece_), false, bytes_in_ + pos);
    passed_partial_ = true;
  }
  return pos;
}

// A complete "*<count>" or "$<len>" line is in line_ (without CRLF).
bool LegacyStream::end_length_line() {
  bool count_line = step_ == Step::kCountLine;
  int64_t value = 0;
  if (!parse_length_line(line_, count_line, value, line_start_)) return false;
  line_.clear();
  if (count_line) {
    if (value <= 0) {  // an empty command: skipped
      held_.clear();
      mode_ = Mode::kIdle;
      return true;
    }
    args_left_ = static_cast<uint64_t>(value);
    first_arg_ = true;
    step_ = Step::kBulkLine;
    return true;
  }
  bulk_left_ = static_cast<uint64_t>(value);
  if (first_arg_ && value != 4) name_known_ = true;  // cannot be "ping"
  step_ = Step::kBulkData;
  return true;
}

// in[from, from + n) is part of the pending command: hold it, or switch to
// passing the command through once it is too large to hold.
void LegacyStream::take(std::string_view in, size_t from, size_t n, StreamSink& sink) {
  if (mode_ != Mode::kHold) return;  // kPassThrough: delivered from piece_ on; kSkip: dropped
  if (name_known_ && held_.size() + n > limits_.max_held) {
    if (!held_.empty()) sink.on_stream(held_, false, bytes_in_ + from);
    passed_partial_ = true;
    held_.clear();
    mode_ = Mode::kPassThrough;
    piece_ = from;
    return;
  }
  held_.append(in.substr(from, n));
}

// The pending command ends at in[pos].
void LegacyStream::finish_command(std::string_view in, size_t pos, StreamSink& sink) {
  Mode mode = mode_;
  mode_ = Mode::kIdle;
  switch (mode) {
    case Mode::kHold:
      commands_++;
      sink.on_stream(held_, true, bytes_in_ + pos);
      held_.clear();
      break;
    case Mode::kPassThrough:
      commands_++;
      passed_partial_ = false;
      sink.on_stream(in.substr(piece_, pos - piece_), true, bytes_in_ + pos);
      piece_ = pos;
      break;
    case Mode::kSkip:
      sink.on_upstream_ping(bytes_in_ + pos);
      break;
    case Mode::kIdle:
    case Mode::kFailed:
      break;
  }
}

}  // namespace psync::protocol
