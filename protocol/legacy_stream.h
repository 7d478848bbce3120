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
  // through in pieces. upstream_end is the upstream position (bytes consumed
  // since reset()) just past the input these bytes came from: with
  // at_boundary, the position a resumed link starts from once these bytes
  // are committed.
  virtual void on_stream(std::string_view bytes, bool at_boundary, uint64_t upstream_end) = 0;
  // An upstream liveness signal that is not copied to the stream: a PING
  // (inline or multibulk, any arguments) or a bare "\n" / "\r\n" line, which
  // ends at upstream position upstream_end (always a command boundary).
  virtual void on_upstream_ping(uint64_t upstream_end) = 0;
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
  // Upstream bytes consumed so far; after an error, the position of the error.
  uint64_t bytes_in() const { return bytes_in_; }
  // True when no partial command is pending (a PING may be inserted now):
  // false only while a large command is being passed through in pieces.
  bool at_boundary() const;

 private:
  // Complete commands are found in the fed bytes themselves (the fast path);
  // only a command cut by the end of a feed goes through the incremental
  // parser below, which holds, passes through or drops its bytes.
  enum class Scan { kOk, kIncomplete, kError };
  enum class Kind { kCommand, kPing, kEmpty };
  size_t scan_commands(std::string_view in, size_t pos, StreamSink& sink);
  Scan scan_multibulk(std::string_view in, size_t start, size_t& end, Kind& kind);
  Scan read_length_line(std::string_view in, size_t& pos, bool count_line, int64_t& value);
  bool parse_length_line(std::string_view line, bool count_line, int64_t& value, uint64_t at);
  // line: without its LF; at: its stream position.
  bool handle_inline(std::string_view line, uint64_t at, StreamSink& sink);

  void begin_command(char first, size_t pos);
  size_t continue_command(std::string_view in, size_t pos, StreamSink& sink);
  bool end_length_line();
  void take(std::string_view in, size_t from, size_t n, StreamSink& sink);
  void finish_command(std::string_view in, size_t pos, StreamSink& sink);
  bool fail(uint64_t at, const std::string& what);

  StreamLimits limits_;
  std::string error_;
  uint64_t commands_ = 0;
  uint64_t bytes_in_ = 0;  // upstream bytes before the current feed

  // What happens to the bytes of a command cut by the end of a feed.
  enum class Mode {
    kIdle,         // no such command
    kHold,         // copied to held_: the command is small so far, or its name is not known yet
    kPassThrough,  // delivered as they come, at_boundary=false until the command ends
    kSkip,         // dropped: an upstream PING
    kFailed,       // a protocol error: no more input until reset()
  } mode_ = Mode::kIdle;
  // Where the incremental parser is inside that command.
  enum class Step { kCountLine, kBulkLine, kBulkData, kBulkCr, kBulkLf, kInline } step_ = Step::kCountLine;
  std::string held_;            // held bytes of the command (inline: the line so far)
  std::string line_;            // the "*<count>" or "$<len>" line read so far
  uint64_t line_start_ = 0;     // stream position of that line (or of the inline line)
  uint64_t args_left_ = 0;      // arguments still to come, the current one included
  uint64_t bulk_left_ = 0;      // payload bytes left in the current argument
  bool first_arg_ = false;      // reading the command name
  bool name_known_ = false;     // the name is read and is not PING
  std::string name_;            // the name while it may still be "ping"
  size_t piece_ = 0;            // in kPassThrough: start of this feed's bytes not yet delivered
  bool passed_partial_ = false; // part of the current command was delivered

  std::string scratch_;                    // re-encoding buffer for inline commands
  std::vector<std::string> inline_args_;
};

}  // namespace psync::protocol
