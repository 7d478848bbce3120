#include "protocol/reply.h"

namespace psync::protocol {

namespace {

void append_line(std::string& out, char type, std::string_view body) {
  out += type;
  out += body;
  out += "\r\n";
}

// A status or error line must not contain CR or LF: the peer would read the
// rest as another reply. Like Redis's addReplyErrorFormat, they become spaces.
void append_text_line(std::string& out, char type, std::string_view text) {
  out += type;
  for (char c : text) out += (c == '\r' || c == '\n') ? ' ' : c;
  out += "\r\n";
}

void append_bulk(std::string& out, std::string_view s) {
  append_line(out, '$', std::to_string(s.size()));
  out += s;
  out += "\r\n";
}

template <typename Args>
void append_args(std::string& out, const Args& args) {
  append_line(out, '*', std::to_string(args.size()));
  for (std::string_view arg : args) append_bulk(out, arg);
}

}  // namespace

std::string simple_string(std::string_view s) {
  std::string out;
  append_text_line(out, '+', s);
  return out;
}

std::string error_reply(std::string_view s) {
  std::string out;
  append_text_line(out, '-', s);
  return out;
}

std::string integer_reply(int64_t v) {
  std::string out;
  append_line(out, ':', std::to_string(v));
  return out;
}

std::string bulk_string(std::string_view s) {
  std::string out;
  append_bulk(out, s);
  return out;
}

std::string null_bulk() { return "$-1\r\n"; }

std::string array_header(size_t n) {
  std::string out;
  append_line(out, '*', std::to_string(n));
  return out;
}

std::string encode_command(std::initializer_list<std::string_view> args) {
  std::string out;
  append_args(out, args);
  return out;
}

void append_command(std::string& out, const std::vector<std::string_view>& args) {
  append_args(out, args);
}

void append_command(std::string& out, const std::vector<std::string>& args) {
  append_args(out, args);
}

}  // namespace psync::protocol
