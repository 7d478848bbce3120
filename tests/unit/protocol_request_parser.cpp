// Tests of the request parser and split_inline_args (protocol/request_parser.h).
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "protocol/request_parser.h"

using psync::protocol::RequestLimits;
using psync::protocol::RequestParser;
using psync::protocol::split_inline_args;
using Args = std::vector<std::string>;
using Result = RequestParser::Result;

namespace {

std::string mb(const Args& args) {
  std::string s;
  s.append("*").append(std::to_string(args.size())).append("\r\n");
  for (const auto& a : args) s.append("$").append(std::to_string(a.size())).append("\r\n").append(a).append("\r\n");
  return s;
}

// What a parser makes of an input fed in pieces of the given sizes: the
// commands and, if it failed, the error.
struct Parsed {
  std::vector<Args> commands;
  std::string error;
  bool operator==(const Parsed&) const = default;
};

Parsed parse_split(std::string_view input, const std::vector<size_t>& sizes, RequestLimits limits = {}) {
  RequestParser parser(limits);
  Parsed parsed;
  Args args;
  size_t pos = 0;
  auto drain = [&] {
    while (true) {
      Result r = parser.next(args);
      if (r == Result::kNeedMore) return true;
      if (r == Result::kError) {
        parsed.error = parser.error();
        return false;
      }
      parsed.commands.push_back(args);
    }
  };
  for (size_t i = 0; pos < input.size(); i++) {
    size_t n = i < sizes.size() ? std::min(sizes[i], input.size() - pos) : input.size() - pos;
    parser.feed(input.substr(pos, n));
    pos += n;
    if (!drain()) break;
  }
  return parsed;
}

Parsed parse_whole(std::string_view input, RequestLimits limits = {}) {
  return parse_split(input, {input.size()}, limits);
}

std::vector<size_t> random_sizes(std::mt19937& rng, size_t total, size_t max_chunk) {
  std::vector<size_t> sizes;
  size_t sum = 0;
  while (sum < total) {
    sizes.push_back(1 + rng() % max_chunk);
    sum += sizes.back();
  }
  return sizes;
}

std::string error_of(std::string_view input, RequestLimits limits = {}) { return parse_whole(input, limits).error; }

}  // namespace

TEST_CASE("request parser: multibulk and inline commands") {
  Parsed p = parse_whole(mb({"PING"}) + "REPLCONF listening-port 6380\r\n" + mb({"PSYNC", "?", "-1"}) +
                         "SYNC\n" + mb({"SET", "k", std::string("a\r\n\0b", 5)}));
  REQUIRE(p.error.empty());
  REQUIRE(p.commands.size() == 5);
  CHECK(p.commands[0] == Args{"PING"});
  CHECK(p.commands[1] == Args{"REPLCONF", "listening-port", "6380"});
  CHECK(p.commands[2] == Args{"PSYNC", "?", "-1"});
  CHECK(p.commands[3] == Args{"SYNC"});
  CHECK(p.commands[4] == Args{"SET", "k", std::string("a\r\n\0b", 5)});
}

TEST_CASE("request parser: keepalives and empty commands are skipped") {
  Parsed p = parse_whole("\n\r\n   \r\n*0\r\n*-1\r\n" + mb({"REPLCONF", "ACK", "100"}) + "\n");
  REQUIRE(p.error.empty());
  REQUIRE(p.commands.size() == 1);
  CHECK(p.commands[0] == Args{"REPLCONF", "ACK", "100"});
}

TEST_CASE("request parser: inline quoting follows Redis") {
  Parsed p = parse_whole("AUTH \"pa ss\\x41\\n\" 'it\\'s'\r\n");
  REQUIRE(p.commands.size() == 1);
  CHECK(p.commands[0] == Args{"AUTH", "pa ssA\n", "it's"});
}

TEST_CASE("request parser: a partial request waits and counts as buffered") {
  RequestParser parser;
  Args args;
  parser.feed("*2\r\n$4\r\nPING\r\n$3\r\nab");
  CHECK(parser.next(args) == Result::kNeedMore);
  CHECK(args.empty());
  CHECK(parser.buffered() == 20);
  parser.feed("c\r\nPI");
  CHECK(parser.next(args) == Result::kCommand);
  CHECK(args == Args{"PING", "abc"});
  CHECK(parser.buffered() == 2);
  CHECK(parser.next(args) == Result::kNeedMore);
  parser.feed("NG\r\n");
  CHECK(parser.next(args) == Result::kCommand);
  CHECK(args == Args{"PING"});
  CHECK(parser.buffered() == 0);
  CHECK(parser.next(args) == Result::kNeedMore);
}

TEST_CASE("request parser: every split gives the same commands") {
  std::mt19937 rng(4242);
  std::string input;
  std::vector<Args> expected;
  for (int i = 0; i < 300; i++) {
    switch (rng() % 6) {
      case 0:
        input += "PING\r\n";
        expected.push_back({"PING"});
        break;
      case 1:
        input += "\n";
        break;
      case 2: {
        std::string value(rng() % 3000, '\0');
        for (auto& c : value) c = static_cast<char>(rng() % 256);
        input += mb({"SET", "key" + std::to_string(i), value});
        expected.push_back({"SET", "key" + std::to_string(i), value});
        break;
      }
      case 3:
        input += "replconf ack " + std::to_string(i) + "\r\n";
        expected.push_back({"replconf", "ack", std::to_string(i)});
        break;
      case 4:
        input += mb({"REPLCONF", "ACK", std::to_string(i), "FACK", "7"});
        expected.push_back({"REPLCONF", "ACK", std::to_string(i), "FACK", "7"});
        break;
      default:
        input += "*0\r\n";
        break;
    }
  }
  Parsed whole = parse_whole(input);
  REQUIRE(whole.error.empty());
  CHECK(whole.commands == expected);
  CHECK(parse_split(input, std::vector<size_t>(input.size(), 1)) == whole);
  for (size_t max_chunk : {2, 7, 64, 1000, 10000}) {
    CAPTURE(max_chunk);
    CHECK(parse_split(input, random_sizes(rng, input.size(), max_chunk)) == whole);
  }
}

TEST_CASE("request parser: protocol errors in Redis's words") {
  CHECK(error_of("*x\r\n") == "Protocol error: invalid multibulk length");
  CHECK(error_of("*01\r\n$1\r\na\r\n") == "Protocol error: invalid multibulk length");
  CHECK(error_of("*1\rx") == "Protocol error: invalid multibulk length");
  CHECK(error_of("*1025\r\n") == "Protocol error: invalid multibulk length");
  CHECK(error_of(std::string("*").append(40, '1')) == "Protocol error: too big mbulk count string");
  CHECK(error_of("*1\r\nx") == "Protocol error: expected '$', got 'x'");
  CHECK(error_of(std::string("*1\r\n\0", 5)) == "Protocol error: expected '$', got '\\x00'");
  CHECK(error_of("*1\r\n$x\r\n") == "Protocol error: invalid bulk length");
  CHECK(error_of("*1\r\n$-1\r\n") == "Protocol error: invalid bulk length");
  CHECK(error_of("*1\r\n$65537\r\n") == "Protocol error: invalid bulk length");
  CHECK(error_of(std::string("*1\r\n$").append(40, '1')) == "Protocol error: too big bulk count string");
  CHECK(error_of("*1\r\n$3\r\nfooXY") == "Protocol error: expected CRLF after bulk argument");
  CHECK(error_of("SET a \"b\r\n") == "Protocol error: unbalanced quotes in request");
  CHECK(error_of("SET a 'b'c\r\n") == "Protocol error: unbalanced quotes in request");
  CHECK(error_of(std::string(70000, 'a')) == "Protocol error: too big inline request");
  CHECK(error_of(std::string(70000, 'a') + "\r\n") == "Protocol error: too big inline request");
  // Commands before the bad one are returned.
  Parsed p = parse_whole("PING\r\n*1\r\n$1\r\nx\r\n*1\r\n:1\r\n");
  CHECK(p.commands == std::vector<Args>{{"PING"}, {"x"}});
  CHECK(p.error == "Protocol error: expected '$', got ':'");
}

TEST_CASE("request parser: limits") {
  RequestLimits limits;
  limits.max_inline_len = 20;
  limits.max_multibulk_count = 3;
  limits.max_bulk_len = 10;
  limits.max_buffered = 60;
  CHECK(error_of("a b c d e f g h i j k\r\n", limits) == "Protocol error: too big inline request");
  CHECK(parse_whole("a b c d e f g h i j\r\n", limits).commands.size() == 1);  // 19 bytes
  CHECK(error_of(mb({"a", "b", "c", "d"}), limits) == "Protocol error: invalid multibulk length");
  CHECK(parse_whole(mb({"a", "b", "c"}), limits).commands.size() == 1);
  CHECK(error_of(mb({"a", std::string(11, 'x')}), limits) == "Protocol error: invalid bulk length");
  CHECK(parse_whole(mb({"a", std::string(10, 'x')}), limits).commands.size() == 1);
  // A request larger than max_buffered fails whether or not it arrives whole.
  limits.max_bulk_len = 20;
  std::string big = mb({"0123456789ab", "0123456789ab", "0123456789ab"});
  REQUIRE(big.size() == 61);
  CHECK(error_of(big, limits) == "Protocol error: too big request");
  CHECK(parse_split(big, std::vector<size_t>(big.size(), 1), limits).error == "Protocol error: too big request");
  std::string fits = mb({"0123456789ab", "0123456789ab", "0123456789a"});
  REQUIRE(fits.size() == 60);
  CHECK(parse_whole(fits, limits).commands.size() == 1);
  CHECK(parse_split(fits, std::vector<size_t>(fits.size(), 1), limits).commands.size() == 1);
  // Pipelined requests are not limited together.
  CHECK(parse_whole(fits + fits + fits, limits).commands.size() == 3);
}

TEST_CASE("request parser: after an error, nothing more") {
  RequestParser parser;
  Args args;
  parser.feed("PING\r\n*1\r\n$x\r\nPING\r\n");
  CHECK(parser.next(args) == Result::kCommand);
  CHECK(parser.next(args) == Result::kError);
  CHECK(parser.error() == "Protocol error: invalid bulk length");
  CHECK(parser.buffered() == 0);
  parser.feed("PING\r\n");
  CHECK(parser.buffered() == 0);
  CHECK(parser.next(args) == Result::kError);
  CHECK(args.empty());
}

TEST_CASE("request parser: errors do not depend on how the input is split") {
  std::mt19937 rng(77);
  RequestLimits limits;
  limits.max_inline_len = 100;
  limits.max_bulk_len = 100;
  limits.max_buffered = 300;
  for (int round = 0; round < 3000; round++) {
    std::string input;
    for (int i = 0; i < 4; i++) {
      input += rng() % 2 ? mb({"SET", "k", std::string(rng() % 120, 'v')}) : "set k \"v\"\r\n";
    }
    for (int i = 0; i < 2; i++) input[rng() % input.size()] = "*$\r\n\"'0-9x "[rng() % 12];
    Parsed whole = parse_whole(input, limits);
    CAPTURE(input);
    CHECK(parse_split(input, std::vector<size_t>(input.size(), 1), limits) == whole);
    CHECK(parse_split(input, random_sizes(rng, input.size(), 30), limits) == whole);
  }
}

TEST_CASE("request parser: parsing stays linear") {
  // 200k pipelined commands in one feed, and a 60 KB argument fed a byte at a
  // time: a parser that rescans its buffer would take minutes here.
  std::string input;
  for (int i = 0; i < 100000; i++) input += "PING\r\n" + mb({"REPLCONF", "ACK", "1"});
  RequestParser parser;
  parser.feed(input);
  Args args;
  size_t n = 0;
  while (parser.next(args) == Result::kCommand) n++;
  CHECK(n == 200000);

  std::string big = mb({"SET", "k", std::string(60000, 'x')}) + std::string(60000, 'y');
  RequestParser parser2;
  size_t commands = 0;
  for (char c : big) {
    parser2.feed(std::string_view(&c, 1));
    while (parser2.next(args) == Result::kCommand) commands++;
  }
  CHECK(commands == 1);
  CHECK(parser2.buffered() == 60000);
}

TEST_CASE("split_inline_args: sdssplitargs semantics") {
  Args out;
  CHECK(split_inline_args("", out));
  CHECK(out.empty());
  CHECK(split_inline_args(" \t \r ", out));
  CHECK(out.empty());
  CHECK(split_inline_args("  set  key\tvalue ", out));
  CHECK(out == Args{"set", "key", "value"});
  CHECK(split_inline_args("\"a b\" 'c d'", out));
  CHECK(out == Args{"a b", "c d"});
  CHECK(split_inline_args("\"\\n\\r\\t\\b\\a\\\\\\\"\\q\"", out));
  CHECK(out == Args{"\n\r\t\b\a\\\"q"});
  CHECK(split_inline_args("\"\\x41\\x4a\\x4G\"", out));  // \x4G is not an escape
  CHECK(out == Args{"AJx4G"});
  CHECK(split_inline_args("'a\\'b\\n'", out));  // only \' in single quotes
  CHECK(out == Args{"a'b\\n"});
  CHECK(split_inline_args("ab\"c d\"", out));  // a quote inside a word starts quoting
  CHECK(out == Args{"abc d"});
  CHECK(split_inline_args("\"\" ''", out));
  CHECK(out == Args{"", ""});
  CHECK(split_inline_args("\"a\"\t'b'\x0b", out));  // a quote may be followed by any space
  CHECK(out == Args{"a", "b"});
  CHECK(split_inline_args(std::string_view("a b\0c d", 7), out));  // NUL ends the line, as in Redis
  CHECK(out == Args{"a", "b"});

  CHECK_FALSE(split_inline_args("\"abc", out));
  CHECK_FALSE(split_inline_args("'abc", out));
  CHECK_FALSE(split_inline_args("\"abc\\\"", out));
  CHECK_FALSE(split_inline_args("\"a\"b", out));
  CHECK_FALSE(split_inline_args("'a'b", out));
  CHECK_FALSE(split_inline_args("\"abc\\", out));
}
