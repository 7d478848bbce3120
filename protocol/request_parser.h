// Incremental parser for the requests a client (a replica, redis-cli, a tool)
// sends to the proxy: RESP multibulk and inline commands, pipelined, split at
// any byte. Pure code: no sockets, no files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace psync::protocol {

struct RequestLimits {
  size_t max_inline_len = 64 * 1024;     // bytes in one inline command line
  size_t max_multibulk_count = 1024;     // arguments in one multibulk request
  size_t max_bulk_len = 64 * 1024;       // bytes in one bulk argument
  size_t max_buffered = 1024 * 1024;     // bytes held for one incomplete request
};

class RequestParser {
 public:
  enum class Result { kNeedMore, kCommand, kError };

  explicit RequestParser(RequestLimits limits = {});

  // Appends bytes to the parser's buffer.
  void feed(std::string_view bytes);

  // Extracts the next complete command into args (cleared first).
  // Empty inline lines (a bare "\n" or "\r\n") are skipped: replicas send them
  // as keepalives while loading. kError: the input broke the protocol or a
  // limit; error() says what, in Redis's words (for example
  // "Protocol error: invalid multibulk length"), and every later call returns
  // kError too.
  Result next(std::vector<std::string>& args);

  const std::string& error() const { return error_; }

  // Bytes held that are not yet returned as a command.
  size_t buffered() const { return buf_.size() - pos_; }
  // Those bytes (a live restart feeds them to the next image's parser).
  std::string_view pending() const { return std::string_view(buf_).substr(pos_); }

 private:
  Result fail(std::string message);
  Result parse_inline(std::vector<std::string>& args);
  Result parse_multibulk(std::vector<std::string>& args);
  void compact();

  RequestLimits limits_;
  std::string buf_;
  size_t pos_ = 0;      // start of the first request not yet returned
  std::string error_;

  // Progress inside the request at pos_, so that a request arriving in many
  // small pieces is not parsed again from its start on every call.
  size_t cursor_ = 0;             // offset from pos_ of the next byte to parse
  int64_t multibulk_left_ = 0;    // bulk arguments still to read (0: count line not read)
  int64_t bulk_len_ = -1;         // length of the argument being read (-1: "$len" line not read)
  std::vector<std::pair<size_t, size_t>> arg_spans_;  // arguments read: offset from pos_, length
};

// Splits an inline command line the way Redis does (sdssplitargs): spaces
// separate arguments, "double quotes" allow \n \r \t \b \a \\ \" and \xHH
// escapes, 'single quotes' allow \'. Returns false on unbalanced quotes or a
// closing quote not followed by a space.
bool split_inline_args(std::string_view line, std::vector<std::string>& out);

}  // namespace psync::protocol
