// The SYNC/PSYNC reply framing reader: what an upstream master sends after
// SYNC or PSYNC up to the first byte of the command stream.
//   - any number of bare "\n" keepalives (and "\r\n"),
//   - for PSYNC: a "+FULLRESYNC <id> <off>" line before the payload, or a
//     "+CONTINUE[ <id>]" line and no payload,
//   - a "-ERR ..." line instead (the master refused),
//   - the payload: "$<len>\r\n" then exactly len bytes (no trailing CRLF), or
//     "$EOF:<40 bytes mark>\r\n" then bytes up to and excluding the mark.
// Everything after the payload is the command stream and is left unconsumed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace psync::protocol {

class PayloadSink {
 public:
  virtual ~PayloadSink() = default;
  virtual void on_keepalive() {}
  // A "+..." line before the payload (without '+' and CRLF), e.g.
  // "FULLRESYNC <id> <off>". "CONTINUE..." lines end the reader instead.
  virtual void on_status_line(std::string_view /*line*/) {}
  // len: the payload size, or nullopt for $EOF: framing.
  virtual void on_payload_start(std::optional<uint64_t> len) = 0;
  virtual void on_payload_data(std::string_view chunk) = 0;
  virtual void on_payload_end() = 0;
};

class PayloadReader {
 public:
  enum class Status {
    kNeedMore,   // all bytes consumed, payload not complete
    kDone,       // payload complete; bytes past *consumed are stream
    kContinue,   // "+CONTINUE[ <id>]": no payload; continue_line() has the line
    kError,      // error(): the master's "-..." reply or a framing error
  };

  static constexpr size_t kMaxLine = 4096;  // longest line accepted before the payload

  // Consumes bytes from the start of `bytes`; sets consumed to how many were
  // used. After kDone / kContinue / kError the reader is finished: call
  // reset() before the next SYNC.
  Status feed(std::string_view bytes, size_t& consumed, PayloadSink& sink);
  void reset();

  const std::string& error() const { return error_; }
  // True when error() is the master's own "-..." reply (e.g. "ERR Unable to
  // perform background save"), false for a framing error. Either way error()
  // is ASCII-safe text (protocol/text.h): the reply as peer_text() gives it.
  bool error_is_reply() const { return error_is_reply_; }
  // The "+CONTINUE..." line without '+' and CRLF: the master's raw bytes (pass
  // them through peer_text() before showing them, is_replid() before keeping an ID).
  const std::string& continue_line() const { return continue_line_; }
  // Payload bytes delivered so far and the announced size (nullopt: $EOF or not started).
  uint64_t payload_bytes() const { return payload_bytes_; }
  std::optional<uint64_t> payload_size() const { return payload_size_; }

 private:
  Status read_line(std::string_view bytes, size_t& pos, PayloadSink& sink);
  Status handle_line(std::string_view line, PayloadSink& sink);
  Status read_sized(std::string_view bytes, size_t& pos, PayloadSink& sink);
  Status read_eof_marked(std::string_view bytes, size_t& pos, PayloadSink& sink);
  Status finish(Status status);
  Status fail(std::string message);

  enum class State { kLine, kSized, kEofMarked, kFinished } state_ = State::kLine;
  Status finished_ = Status::kNeedMore;  // what feed() returns once kFinished
  std::string line_;       // the line read so far, CR and LF included
  std::string error_;
  bool error_is_reply_ = false;
  std::string continue_line_;
  std::string mark_;       // the 40-byte $EOF: mark
  std::string tail_;       // last bytes held back in $EOF mode (under 40: may start the mark)
  uint64_t payload_bytes_ = 0;
  uint64_t left_ = 0;
  std::optional<uint64_t> payload_size_;
};

}  // namespace psync::protocol
