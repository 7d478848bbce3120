#include "protocol/request_parser.h"

#include <algorithm>
#include <optional>

#include "protocol/numbers.h"
#include "protocol/text.h"

namespace psync::protocol {

namespace {

// "*<count>" and "$<len>" lines: a 64-bit number needs at most 21 bytes, so a
// longer line is garbage and is refused without waiting for its end.
constexpr size_t kMaxLengthLine = 32;
// The buffer is compacted once this many consumed bytes sit before pos_ (and
// they are at least half of it), and dropped when idle and larger than this.
constexpr size_t kCompactAt = 64 * 1024;

enum class LineScan { kIncomplete, kTooLong, kBadEnd, kOk };

// Finds the CRLF ending the "*<count>" or "$<len>" line at the start of s;
// line_len is set to the bytes before the CR.
LineScan scan_length_line(std::string_view s, size_t& line_len) {
  size_t cr = s.substr(0, std::min(s.size(), kMaxLengthLine + 1)).find('\r');
  if (cr == std::string_view::npos) {
    return s.size() > kMaxLengthLine ? LineScan::kTooLong : LineScan::kIncomplete;
  }
  if (cr + 1 == s.size()) return LineScan::kIncomplete;
  if (s[cr + 1] != '\n') return LineScan::kBadEnd;
  line_len = cr;
  return LineScan::kOk;
}

// A count or length as Redis's string2ll reads it: optional '-', digits, no
// leading zeros, no '+', no overflow.
std::optional<int64_t> parse_length(std::string_view s) {
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  if (s.size() > 1 && s[0] == '-' && s[1] == '0') return std::nullopt;
  return parse_i64(s);
}

bool is_space(char c) {  // isspace() in the C locale
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

}  // namespace

RequestParser::RequestParser(RequestLimits limits) : limits_(limits) {}

void RequestParser::feed(std::string_view bytes) {
  if (!error_.empty()) return;  // nothing more is parsed: do not hold it
  buf_.append(bytes);
}

RequestParser::Result RequestParser::next(std::vector<std::string>& args) {
  args.clear();
  if (!error_.empty()) return Result::kError;
  while (pos_ < buf_.size()) {
    Result result = buf_[pos_] == '*' ? parse_multibulk(args) : parse_inline(args);
    if (result == Result::kError) return result;
    if (result == Result::kNeedMore) {
      // Everything held belongs to the incomplete request.
      if (buffered() > limits_.max_buffered) return fail("Protocol error: too big request");
      return result;
    }
    compact();
    if (!args.empty()) return Result::kCommand;
    // An empty inline line or "*0": nothing to return, as in Redis.
  }
  compact();
  return Result::kNeedMore;
}

RequestParser::Result RequestParser::fail(std::string message) {
  error_ = std::move(message);
  std::string().swap(buf_);
  pos_ = 0;
  cursor_ = 0;
  return Result::kError;
}

// One inline request: a line ending at '\n' (an optional '\r' before it is
// dropped), split into arguments like Redis's processInlineBuffer.
RequestParser::Result RequestParser::parse_inline(std::vector<std::string>& args) {
  size_t limit = std::min(limits_.max_inline_len, limits_.max_buffered);
  size_t newline = buf_.find('\n', pos_ + cursor_);
  if (newline == std::string::npos) {
    cursor_ = buf_.size() - pos_;  // searched up to here
    if (cursor_ > limit) return fail("Protocol error: too big inline request");
    return Result::kNeedMore;
  }
  std::string_view line(buf_.data() + pos_, newline - pos_);
  if (line.size() > limit) return fail("Protocol error: too big inline request");
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!split_inline_args(line, args)) {
    args.clear();
    return fail("Protocol error: unbalanced quotes in request");
  }
  pos_ = newline + 1;
  cursor_ = 0;
  return Result::kCommand;
}

// One multibulk request: "*<count>\r\n" then count times "$<len>\r\n<bytes>\r\n",
// like Redis's processMultibulkBuffer. Progress is kept between calls.
RequestParser::Result RequestParser::parse_multibulk(std::vector<std::string>& args) {
  if (multibulk_left_ == 0) {
    std::string_view rest(buf_.data() + pos_, buf_.size() - pos_);
    size_t line_len = 0;
    switch (scan_length_line(rest, line_len)) {
      case LineScan::kIncomplete: return Result::kNeedMore;
      case LineScan::kTooLong: return fail("Protocol error: too big mbulk count string");
      case LineScan::kBadEnd: return fail("Protocol error: invalid multibulk length");
      case LineScan::kOk: break;
    }
    auto count = parse_length(rest.substr(1, line_len - 1));
    if (!count || (*count > 0 && static_cast<uint64_t>(*count) > limits_.max_multibulk_count)) {
      return fail("Protocol error: invalid multibulk length");
    }
    if (*count <= 0) {  // "*0" and "*-1" are skipped
      pos_ += line_len + 2;
      cursor_ = 0;
      return Result::kCommand;
    }
    cursor_ = line_len + 2;
    multibulk_left_ = *count;
    bulk_len_ = -1;
    arg_spans_.clear();
  }

  while (multibulk_left_ > 0) {
    if (bulk_len_ < 0) {
      std::string_view rest(buf_.data() + pos_ + cursor_, buf_.size() - pos_ - cursor_);
      if (rest.empty()) return Result::kNeedMore;
      if (rest[0] != '$') {
        return fail("Protocol error: expected '$', got " + quoted(rest.substr(0, 1)));
      }
      size_t line_len = 0;
      switch (scan_length_line(rest, line_len)) {
        case LineScan::kIncomplete: return Result::kNeedMore;
        case LineScan::kTooLong: return fail("Protocol error: too big bulk count string");
        case LineScan::kBadEnd: return fail("Protocol error: invalid bulk length");
        case LineScan::kOk: break;
      }
      auto len = parse_length(rest.substr(1, line_len - 1));
      if (!len || *len < 0 || static_cast<uint64_t>(*len) > limits_.max_bulk_len) {
        return fail("Protocol error: invalid bulk length");
      }
      cursor_ += line_len + 2;
      bulk_len_ = *len;
      if (cursor_ + static_cast<size_t>(bulk_len_) + 2 > limits_.max_buffered) {
        return fail("Protocol error: too big request");
      }
    }
    size_t len = static_cast<size_t>(bulk_len_);
    if (buf_.size() - pos_ - cursor_ < len + 2) return Result::kNeedMore;
    const char* end = buf_.data() + pos_ + cursor_ + len;
    if (end[0] != '\r' || end[1] != '\n') {
      return fail("Protocol error: expected CRLF after bulk argument");
    }
    arg_spans_.emplace_back(cursor_, len);
    cursor_ += len + 2;
    bulk_len_ = -1;
    multibulk_left_--;
  }

  args.reserve(arg_spans_.size());
  for (auto [offset, len] : arg_spans_) args.emplace_back(buf_.data() + pos_ + offset, len);
  pos_ += cursor_;
  cursor_ = 0;
  return Result::kCommand;
}

// Called between requests: drops the consumed bytes before pos_ now and then,
// so that parsing stays linear in the bytes fed.
void RequestParser::compact() {
  if (pos_ == buf_.size()) {
    if (buf_.capacity() > kCompactAt) {
      std::string().swap(buf_);
    } else {
      buf_.clear();
    }
    pos_ = 0;
  } else if (pos_ >= kCompactAt && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
}

// Redis's sdssplitargs on a string_view. Like Redis, which reads the line as
// a C string, a NUL byte ends the line.
bool split_inline_args(std::string_view line, std::vector<std::string>& out) {
  out.clear();
  line = line.substr(0, line.find('\0'));
  const size_t n = line.size();
  // The byte at i, or '\0' past the end (where sdssplitargs sees the NUL).
  auto at = [&](size_t i) { return i < n ? line[i] : '\0'; };

  size_t i = 0;
  while (true) {
    while (i < n && is_space(line[i])) i++;
    if (i == n) return true;

    std::string current;
    bool in_double_quotes = false;
    bool in_single_quotes = false;
    bool done = false;
    while (!done) {
      char c = at(i);
      if (in_double_quotes) {
        if (c == '\\' && at(i + 1) == 'x' && is_hex_digit(at(i + 2)) && is_hex_digit(at(i + 3))) {
          current += static_cast<char>(hex_digit_value(at(i + 2)) * 16 + hex_digit_value(at(i + 3)));
          i += 3;
        } else if (c == '\\' && at(i + 1) != '\0') {
          i++;
          switch (line[i]) {
            case 'n': current += '\n'; break;
            case 'r': current += '\r'; break;
            case 't': current += '\t'; break;
            case 'b': current += '\b'; break;
            case 'a': current += '\a'; break;
            default: current += line[i]; break;
          }
        } else if (c == '"') {
          // The closing quote must be followed by a space or nothing at all.
          if (at(i + 1) != '\0' && !is_space(at(i + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;  // unterminated quotes
        } else {
          current += c;
        }
      } else if (in_single_quotes) {
        if (c == '\\' && at(i + 1) == '\'') {
          i++;
          current += '\'';
        } else if (c == '\'') {
          if (at(i + 1) != '\0' && !is_space(at(i + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;
        } else {
          current += c;
        }
      } else {
        switch (c) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
          case '\0': done = true; break;
          case '"': in_double_quotes = true; break;
          case '\'': in_single_quotes = true; break;
          default: current += c; break;
        }
      }
      if (i < n) i++;
    }
    out.push_back(std::move(current));
  }
}

}  // namespace psync::protocol
