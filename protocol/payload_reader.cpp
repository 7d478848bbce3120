#include "protocol/payload_reader.h"
#include "protocol/text.h"

#include <algorithm>
#include <cstdio>

#include "protocol/numbers.h"

namespace psync::protocol {

namespace {

constexpr size_t kEofMarkSize = 40;  // Redis's RDB_EOF_MARK_SIZE


}  // namespace

PayloadReader::Status PayloadReader::feed(std::string_view bytes, size_t& consumed, PayloadSink& sink) {
  size_t pos = 0;
  Status status = state_ == State::kFinished ? finished_ : Status::kNeedMore;
  while (state_ != State::kFinished && pos < bytes.size()) {
    switch (state_) {
      case State::kLine: status = read_line(bytes, pos, sink); break;
      case State::kSized: status = read_sized(bytes, pos, sink); break;
      case State::kEofMarked: status = read_eof_marked(bytes, pos, sink); break;
      case State::kFinished: break;
    }
  }
  consumed = pos;
  return status;
}

void PayloadReader::reset() { *this = PayloadReader(); }

// Reads (part of) a line before the payload: a keepalive, a "+..." status,
// a "-..." error or the "$..." payload header.
PayloadReader::Status PayloadReader::read_line(std::string_view bytes, size_t& pos, PayloadSink& sink) {
  if (line_.empty()) {
    char c = bytes[pos];
    if (c != '\n' && c != '\r' && c != '+' && c != '-' && c != '$') {
      return fail("unexpected " + quoted(bytes.substr(pos, 1)) +
                  " from the master where a reply line or the payload should start");
    }
  }
  size_t newline = bytes.find('\n', pos);
  size_t end = newline == std::string_view::npos ? bytes.size() : newline + 1;
  // The line without its LF, which may still hold a CR that is not part of it.
  size_t body = line_.size() + (end - pos) - (newline == std::string_view::npos ? 0 : 1);
  if (body > kMaxLine + 1) {
    return fail("line longer than " + std::to_string(kMaxLine) + " bytes from the master: " +
                quoted(line_ + std::string(bytes.substr(pos, 16))));
  }
  line_.append(bytes.substr(pos, end - pos));
  pos = end;
  if (newline == std::string_view::npos) return Status::kNeedMore;

  std::string line = std::move(line_);
  line_.clear();
  line.pop_back();  // LF
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.size() > kMaxLine) {
    return fail("line longer than " + std::to_string(kMaxLine) + " bytes from the master: " + quoted(line));
  }
  return handle_line(line, sink);
}

PayloadReader::Status PayloadReader::handle_line(std::string_view line, PayloadSink& sink) {
  if (line.empty()) {
    sink.on_keepalive();
    return Status::kNeedMore;
  }
  switch (line[0]) {
    case '-':
      error_ = peer_text(line.substr(1));  // kept and shown: ASCII-safe from here (text.h)
      error_is_reply_ = true;
      return finish(Status::kError);
    case '+': {
      std::string_view status = line.substr(1);
      if (status == "CONTINUE" || status.starts_with("CONTINUE ")) {
        continue_line_ = status;
        return finish(Status::kContinue);
      }
      sink.on_status_line(status);
      return Status::kNeedMore;
    }
    case '$': {
      if (line.starts_with("$EOF:")) {
        std::string_view mark = line.substr(5);
        if (mark.size() != kEofMarkSize) {
          return fail("bad $EOF: payload header from the master (the mark must be " +
                      std::to_string(kEofMarkSize) + " bytes): " + quoted(line));
        }
        mark_ = mark;
        tail_.clear();
        payload_size_.reset();
        state_ = State::kEofMarked;
        sink.on_payload_start(std::nullopt);
        return Status::kNeedMore;
      }
      auto len = parse_u64(line.substr(1));
      if (!len) return fail("bad payload length from the master: " + quoted(line));
      payload_size_ = *len;
      left_ = *len;
      state_ = State::kSized;
      sink.on_payload_start(*len);
      if (left_ == 0) {
        sink.on_payload_end();
        return finish(Status::kDone);
      }
      return Status::kNeedMore;
    }
    default:
      return fail("unexpected line from the master before the payload: " + quoted(line));
  }
}

// "$<len>" payload: exactly len bytes, passed on as they come.
PayloadReader::Status PayloadReader::read_sized(std::string_view bytes, size_t& pos, PayloadSink& sink) {
  size_t n = static_cast<size_t>(std::min<uint64_t>(left_, bytes.size() - pos));
  sink.on_payload_data(bytes.substr(pos, n));
  pos += n;
  left_ -= n;
  payload_bytes_ += n;
  if (left_ > 0) return Status::kNeedMore;
  sink.on_payload_end();
  return finish(Status::kDone);
}

// "$EOF:<mark>" payload: bytes up to the mark. The last kEofMarkSize - 1
// bytes seen are held back in tail_, since they may be the start of the mark.
PayloadReader::Status PayloadReader::read_eof_marked(std::string_view bytes, size_t& pos,
                                                     PayloadSink& sink) {
  auto deliver = [&](std::string_view chunk) {
    if (chunk.empty()) return;
    payload_bytes_ += chunk.size();
    sink.on_payload_data(chunk);
  };
  auto end_payload = [&] {
    tail_.clear();
    sink.on_payload_end();
    return finish(Status::kDone);
  };
  std::string_view in = bytes.substr(pos);

  // A mark that starts in the held tail and ends in the new bytes.
  if (!tail_.empty()) {
    std::string joined = tail_;
    joined.append(in.substr(0, kEofMarkSize - 1));
    size_t at = joined.find(mark_);
    if (at != std::string::npos) {  // at < tail_.size(): joined has too few new bytes otherwise
      deliver(std::string_view(tail_).substr(0, at));
      pos += at + kEofMarkSize - tail_.size();
      return end_payload();
    }
  }
  // A mark wholly in the new bytes.
  size_t at = in.find(mark_);
  if (at != std::string_view::npos) {
    deliver(tail_);
    deliver(in.substr(0, at));
    pos += at + kEofMarkSize;
    return end_payload();
  }
  // No mark yet: deliver all but the last kEofMarkSize - 1 bytes.
  pos = bytes.size();
  size_t keep = kEofMarkSize - 1;
  size_t total = tail_.size() + in.size();
  if (total <= keep) {
    tail_.append(in);
    return Status::kNeedMore;
  }
  size_t release = total - keep;
  if (release <= tail_.size()) {
    deliver(std::string_view(tail_).substr(0, release));
    tail_.erase(0, release);
    tail_.append(in);
  } else {
    size_t from_in = release - tail_.size();
    deliver(tail_);
    deliver(in.substr(0, from_in));
    tail_.assign(in.substr(from_in));
  }
  return Status::kNeedMore;
}

PayloadReader::Status PayloadReader::finish(Status status) {
  state_ = State::kFinished;
  finished_ = status;
  return status;
}

PayloadReader::Status PayloadReader::fail(std::string message) {
  error_ = std::move(message);
  error_is_reply_ = false;
  return finish(Status::kError);
}

}  // namespace psync::protocol
