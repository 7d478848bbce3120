// The legacy stream normalizer: turns the command stream an old master sends
// after its RDB (2.4/2.6 inline "select N" and "PING", "\n" keepalives, RESP
// multibulk) into the stream the proxy logs: RESP multibulk only, upstream
// PINGs and keepalives removed. Multibulk commands pass byte-identical and,
// where they arrive whole in one feed, without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace psync::protocol {

struct StreamLimits {
  size_t max_inline_len = 64 * 1024;          // bytes in one inline line
  size_t max_multibulk_count = 64 * 1024 * 1024;  // arguments in one command
  uint64_t max_bulk_len = 1ull << 32;         // bytes in one argument (Redis: proto-max-bulk-len 512mb)
  size_t max_held = 64 * 1024;                // bytes held back while the command name is not complete
};

class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Normalized bytes to append to the log, in order. at_boundary is true when
  // the bytes end exactly at the end of a command (a PING of the proxy's own
  // may be inserted after them); false while a large command is passed
  // through in pieces.
  virtual void on_stream(std::string_view bytes, bool at_boundary) = 0;
  // An upstream liveness signal that is not copied to the stream: a PING
  // (inline or multibulk, any arguments) or a bare "\n" / "\r\n" line.
  virtual void on_upstream_ping() = 0;
};

class LegacyStream {
 public:
  explicit LegacyStream(StreamLimits limits = {});

  // Consumes all of bytes, calling the sink as commands complete. Returns
  // false on a protocol error (the bytes are not RESP): error() says what and
  // at which stream position; the normalizer then refuses further input until
  // reset(). Bytes before the bad command were delivered; nothing after it is.
  bool feed(std::string_view bytes, StreamSink& sink);

  void reset();

  const std::string& error() const { return error_; }
  // Commands delivered to the stream so far (PINGs excluded).
  uint64_t commands() const { return commands_; }
  // Upstream bytes consumed so far.
  uint64_t bytes_in() const { return bytes_in_; }
  // True when no partial command is pending (a PING may be inserted now).
  bool at_boundary() const;

 private:
  // Implementation state is private to legacy_stream.cpp's design.
  StreamLimits limits_;
  std::string error_;
  uint64_t commands_ = 0;
  uint64_t bytes_in_ = 0;
  std::string held_;      // bytes of an incomplete command not yet delivered
  std::string scratch_;   // re-encoding buffer for inline commands
  // Pass-through state for a command larger than one feed.
  enum class State { kIdle, kPassThrough, kSkip, kFailed } state_ = State::kIdle;
  uint64_t args_left_ = 0;     // arguments still to come in the current command
  uint64_t bulk_left_ = 0;     // payload bytes (+2 for CRLF) left in the current argument
  bool in_bulk_ = false;       // inside an argument's payload
  std::string header_;         // partial "$len\r\n" line in pass-through
};

}  // namespace psync::protocol
