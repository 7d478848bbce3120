// Tests of the legacy stream normalizer (protocol/legacy_stream.h).
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "protocol/legacy_stream.h"

using psync::protocol::LegacyStream;
using psync::protocol::StreamLimits;
using psync::protocol::StreamSink;

namespace {

// Records what the normalizer delivers.
struct RecordingSink : StreamSink {
  std::string out;                          // concatenated stream bytes
  std::vector<std::pair<size_t, bool>> pieces;  // (end offset in out, at_boundary) per call
  std::vector<size_t> pings;                // out.size() at each upstream ping
  std::vector<std::string_view> views;      // the views as passed
  size_t empty_pieces = 0;
  // (upstream position, out.size()) at each boundary (command or ping).
  std::vector<std::pair<uint64_t, size_t>> marks;

  void on_stream(std::string_view bytes, bool at_boundary, uint64_t upstream_end) override {
    if (bytes.empty()) empty_pieces++;
    out.append(bytes);
    pieces.emplace_back(out.size(), at_boundary);
    views.push_back(bytes);
    if (at_boundary) marks.emplace_back(upstream_end, out.size());
  }
  void on_upstream_ping(uint64_t upstream_end) override {
    pings.push_back(out.size());
    marks.emplace_back(upstream_end, out.size());
  }
};

// A RESP multibulk command, encoded here independently of protocol/reply.h.
std::string mb(const std::vector<std::string>& args) {
  std::string s;
  s.append("*").append(std::to_string(args.size())).append("\r\n");
  for (const auto& a : args) s.append("$").append(std::to_string(a.size())).append("\r\n").append(a).append("\r\n");
  return s;
}

// Feeds input in pieces of the given sizes (the last piece takes the rest).
// Returns false as soon as a feed fails.
bool feed_split(LegacyStream& stream, std::string_view input, const std::vector<size_t>& sizes,
                RecordingSink& sink) {
  size_t pos = 0;
  for (size_t n : sizes) {
    if (pos >= input.size()) break;
    n = std::min(n, input.size() - pos);
    if (!stream.feed(input.substr(pos, n), sink)) return false;
    pos += n;
  }
  if (pos < input.size()) return stream.feed(input.substr(pos), sink);
  return true;
}

std::vector<size_t> bytewise(size_t n) { return std::vector<size_t>(n, 1); }

std::vector<size_t> random_sizes(std::mt19937& rng, size_t total, size_t max_chunk) {
  std::vector<size_t> sizes;
  std::uniform_int_distribution<size_t> dist(1, max_chunk);
  size_t sum = 0;
  while (sum < total) {
    sizes.push_back(dist(rng));
    sum += sizes.back();
  }
  return sizes;
}

// A generated upstream stream and what the normalizer must make of it.
struct Scenario {
  std::string input;
  std::string expected;
  std::vector<size_t> command_ends;  // offsets in expected where commands end
  std::vector<size_t> pings;         // offsets in expected where pings are signalled
  uint64_t commands = 0;
  bool only_multibulk_commands = true;  // no inline, no PING, no empty command

  void command(const std::string& in, const std::string& out) {
    input += in;
    expected += out;
    command_ends.push_back(expected.size());
    commands++;
  }
  void multibulk(const std::vector<std::string>& args) { command(mb(args), mb(args)); }
  void ping(const std::string& in) {
    input += in;
    pings.push_back(expected.size());
    only_multibulk_commands = false;
  }
};

std::string random_bytes(std::mt19937& rng, size_t n) {
  // Heavy on the bytes that matter to the parser.
  static const char kSpecial[] = {'\r', '\n', '*', '$', ' ', '"', '\0'};
  std::string s(n, '\0');
  for (auto& c : s) {
    unsigned r = rng() % 16;
    c = r < 7 ? kSpecial[r] : static_cast<char>(rng() % 256);
  }
  return s;
}

Scenario random_scenario(std::mt19937& rng, size_t n_commands, bool multibulk_only, size_t big_value) {
  Scenario s;
  for (size_t i = 0; i < n_commands; i++) {
    unsigned kind = multibulk_only ? rng() % 4 : rng() % 13;
    switch (kind) {
      case 0:
        s.multibulk({"SET", "key:" + std::to_string(i), random_bytes(rng, rng() % 20)});
        break;
      case 1:
        s.multibulk({"SET", random_bytes(rng, rng() % 8), random_bytes(rng, 100 + rng() % 300)});
        break;
      case 2:  // occasionally a value larger than what is held
        s.multibulk({"SET", "big", random_bytes(rng, rng() % 4 == 0 ? big_value : rng() % 2000)});
        break;
      case 3:
        s.multibulk({"MULTI"});
        s.multibulk({"INCR", "counter"});
        s.multibulk({"LPUSH", "list", random_bytes(rng, 5), "*1\r\n$4\r\nPING\r\n"});
        s.multibulk({"EXEC"});
        break;
      case 4: s.ping(mb({"PING"})); break;
      case 5: s.ping(mb({"ping", "arg"})); break;
      case 6: s.ping(rng() % 2 ? "PING\r\n" : "pInG\n"); break;
      case 7: s.ping(rng() % 2 ? "\n" : "\r\n"); break;
      case 8: {
        std::string db = std::to_string(rng() % 16);
        s.command("select " + db + "\r\n", mb({"SELECT", db}));
        s.only_multibulk_commands = false;
        break;
      }
      case 9:
        s.command("set k \"a b\\r\\n\"\n", mb({"set", "k", "a b\r\n"}));
        s.only_multibulk_commands = false;
        break;
      case 10:
        s.input += rng() % 2 ? "*0\r\n" : "*-1\r\n";
        s.only_multibulk_commands = false;
        break;
      case 11:  // a PING with a large argument is dropped whole
        s.ping(mb({"PING", random_bytes(rng, big_value)}));
        break;
      default:
        s.multibulk({"EVAL", "return 1", "0"});
        break;
    }
  }
  return s;
}

// Feeds a scenario split as given and checks everything the sink saw.
void check_scenario(const Scenario& s, const StreamLimits& limits, const std::vector<size_t>& sizes) {
  LegacyStream stream(limits);
  RecordingSink sink;
  REQUIRE(feed_split(stream, s.input, sizes, sink));
  CHECK(stream.error().empty());
  REQUIRE(sink.out.size() == s.expected.size());
  CHECK(sink.out == s.expected);
  CHECK(sink.pings == s.pings);
  CHECK(stream.commands() == s.commands);
  CHECK(stream.bytes_in() == s.input.size());
  CHECK(stream.at_boundary());
  CHECK(sink.empty_pieces == 0);
  for (auto [end, at_boundary] : sink.pieces) {
    bool is_command_end = std::binary_search(s.command_ends.begin(), s.command_ends.end(), end);
    CHECK(is_command_end == at_boundary);
  }
}

}  // namespace

TEST_CASE("legacy stream: the 2.6 stream is normalized to multibulk") {
  const std::string input =
      "*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$2\r\nv0\r\n"
      "select 1\r\n"
      "*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n"
      "select 0\r\n"
      "*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n"
      "*1\r\n$4\r\nPING\r\n";
  const std::string expected =
      "*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$2\r\nv0\r\n"
      "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n"
      "*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n"
      "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"
      "*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n";
  for (size_t split = 0; split <= input.size(); split++) {
    CAPTURE(split);
    LegacyStream stream;
    RecordingSink sink;
    REQUIRE(stream.feed(std::string_view(input).substr(0, split), sink));
    REQUIRE(stream.feed(std::string_view(input).substr(split), sink));
    CHECK(sink.out == expected);
    CHECK(sink.pings.size() == 1);
    CHECK(stream.commands() == 5);
    CHECK(stream.bytes_in() == input.size());
  }
}

TEST_CASE("legacy stream: inline select becomes the exact multibulk SELECT") {
  LegacyStream stream;
  RecordingSink sink;
  REQUIRE(stream.feed("select 3\r\n", sink));
  CHECK(sink.out == "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n");
  REQUIRE(stream.feed("SeLeCt 12\n", sink));
  CHECK(sink.out == "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n");
  CHECK(stream.commands() == 2);
  CHECK(sink.pings.empty());
}

TEST_CASE("legacy stream: other inline commands keep their arguments as sent") {
  LegacyStream stream;
  RecordingSink sink;
  REQUIRE(stream.feed("set Key \"a\\x41 b\" 'it''s'x\r\n", sink) == false);  // closing quote then 'x'
  stream.reset();
  REQUIRE(stream.feed("set Key \"a\\x41 b\"\r\n", sink));
  CHECK(sink.out == "*3\r\n$3\r\nset\r\n$3\r\nKey\r\n$4\r\naA b\r\n");
}

TEST_CASE("legacy stream: PINGs and keepalives are signalled, not streamed") {
  LegacyStream stream;
  RecordingSink sink;
  REQUIRE(stream.feed("PING\r\n", sink));             // 2.4 inline
  REQUIRE(stream.feed("*1\r\n$4\r\nPING\r\n", sink));  // 2.6 multibulk
  REQUIRE(stream.feed("\n\r\n", sink));                // keepalives
  REQUIRE(stream.feed("*2\r\n$4\r\npInG\r\n$5\r\nhello\r\n", sink));  // any case, any arguments
  REQUIRE(stream.feed("ping extra\n   \r\n", sink));
  CHECK(sink.out.empty());
  CHECK(sink.pings.size() == 7);
  CHECK(stream.commands() == 0);
  CHECK(stream.bytes_in() == 6 + 14 + 3 + 25 + 16);

  // A command whose name merely starts like PING is a command.
  REQUIRE(stream.feed("*1\r\n$5\r\nPINGS\r\n*1\r\n$3\r\nPIN\r\n", sink));
  CHECK(sink.out == "*1\r\n$5\r\nPINGS\r\n*1\r\n$3\r\nPIN\r\n");
  CHECK(sink.pings.size() == 7);
}

TEST_CASE("legacy stream: empty multibulk commands are skipped") {
  LegacyStream stream;
  RecordingSink sink;
  REQUIRE(stream.feed("*0\r\n*-1\r\n*1\r\n$4\r\nEXEC\r\n*0\r\n", sink));
  CHECK(sink.out == "*1\r\n$4\r\nEXEC\r\n");
  CHECK(stream.commands() == 1);
  CHECK(sink.pings.empty());
}

TEST_CASE("legacy stream: complete commands go out as one span of the input") {
  std::string input = mb({"MULTI"}) + mb({"SET", "a", "1"}) + mb({"EXEC"});
  LegacyStream stream;
  RecordingSink sink;
  REQUIRE(stream.feed(input, sink));
  REQUIRE(sink.views.size() == 1);
  CHECK(sink.views[0].data() == input.data());  // no copy
  CHECK(sink.views[0].size() == input.size());
  CHECK(sink.pieces[0].second);
  CHECK(stream.commands() == 3);

  // A PING splits the run; both halves still point into the input.
  std::string with_ping = mb({"SET", "a", "1"}) + mb({"PING"}) + mb({"SET", "b", "2"});
  RecordingSink sink2;
  REQUIRE(stream.feed(with_ping, sink2));
  REQUIRE(sink2.views.size() == 2);
  CHECK(sink2.views[0].data() == with_ping.data());
  CHECK(sink2.views[1].data() == with_ping.data() + mb({"SET", "a", "1"}).size() + 14);
  CHECK(sink2.pings == std::vector<size_t>{mb({"SET", "a", "1"}).size()});
}

TEST_CASE("legacy stream: binary values with CRLF and '*' pass byte-identical") {
  std::string value = "*1\r\n$4\r\nPING\r\n\r\n*\n$\r";
  value += std::string("\0\xff\r", 3);
  std::string input = mb({"SET", "bin", value}) + mb({"RPUSH", "l", "\r\n", "*", "$-1"});
  for (size_t split = 0; split <= input.size(); split++) {
    LegacyStream stream;
    RecordingSink sink;
    REQUIRE(stream.feed(std::string_view(input).substr(0, split), sink));
    REQUIRE(stream.feed(std::string_view(input).substr(split), sink));
    CHECK(sink.out == input);
    CHECK(sink.pings.empty());
    CHECK(stream.commands() == 2);
  }
}

TEST_CASE("legacy stream: a 5 MB value fed in 4 KB chunks streams with bounded holding") {
  std::mt19937 rng(7);
  std::string value = random_bytes(rng, 5 * 1024 * 1024);
  std::string input = mb({"SET", "k0", "v0"}) + mb({"SET", "huge", value}) + mb({"INCR", "n"});
  StreamLimits limits;
  LegacyStream stream(limits);
  RecordingSink sink;
  size_t fed = 0;
  size_t max_lag = 0;
  size_t pieces_before_end = 0;
  size_t command_end = mb({"SET", "k0", "v0"}).size() + mb({"SET", "huge", value}).size();
  while (fed < input.size()) {
    size_t n = std::min<size_t>(4096, input.size() - fed);
    REQUIRE(stream.feed(std::string_view(input).substr(fed, n), sink));
    fed += n;
    max_lag = std::max(max_lag, fed - sink.out.size());  // bytes received but not delivered
    if (fed < command_end && !sink.pieces.empty() && !sink.pieces.back().second) pieces_before_end++;
    if (fed < command_end && sink.out.size() > mb({"SET", "k0", "v0"}).size()) CHECK_FALSE(stream.at_boundary());
  }
  CHECK(sink.out == input);
  CHECK(stream.commands() == 3);
  CHECK(stream.at_boundary());
  CHECK(pieces_before_end > 1000);  // the value streamed while it arrived
  CHECK(max_lag <= limits.max_held + 64);
  // Exactly one piece ends the big command with at_boundary=true.
  size_t ends_at_command = 0;
  for (auto [end, boundary] : sink.pieces) {
    if (end == command_end) {
      ends_at_command++;
      CHECK(boundary);
    }
  }
  CHECK(ends_at_command == 1);
}

TEST_CASE("legacy stream: a large PING is dropped without being held") {
  std::mt19937 rng(8);
  std::string input = mb({"PING", random_bytes(rng, 300000)}) + mb({"SET", "a", "b"});
  LegacyStream stream;
  RecordingSink sink;
  for (size_t fed = 0; fed < input.size(); fed += 1000) {
    REQUIRE(stream.feed(std::string_view(input).substr(fed, 1000), sink));
    CHECK(stream.at_boundary());
  }
  CHECK(sink.out == mb({"SET", "a", "b"}));
  CHECK(sink.pings == std::vector<size_t>{0});
}

TEST_CASE("legacy stream: a small command cut by a feed is held and delivered whole") {
  std::string input = mb({"SET", "key", "value"});
  LegacyStream stream;
  RecordingSink sink;
  REQUIRE(stream.feed(std::string_view(input).substr(0, 10), sink));
  CHECK(sink.out.empty());
  CHECK(stream.at_boundary());  // nothing of it was delivered: a PING may go first
  REQUIRE(stream.feed(std::string_view(input).substr(10), sink));
  REQUIRE(sink.pieces.size() == 1);
  CHECK(sink.out == input);
  CHECK(sink.pieces[0].second);
}

TEST_CASE("legacy stream: a command larger than max_held passes through in pieces") {
  StreamLimits limits;
  limits.max_held = 16;
  std::string input = mb({"SET", "key", std::string(100, 'x')}) + mb({"SET", "a", "b"});
  LegacyStream stream(limits);
  RecordingSink sink;
  REQUIRE(stream.feed(std::string_view(input).substr(0, 30), sink));
  CHECK_FALSE(stream.at_boundary());
  CHECK(sink.out.size() >= 30 - limits.max_held);
  for (auto [end, boundary] : sink.pieces) CHECK_FALSE(boundary);
  REQUIRE(stream.feed(std::string_view(input).substr(30, 60), sink));
  CHECK_FALSE(stream.at_boundary());
  CHECK(sink.out == input.substr(0, 90));
  REQUIRE(stream.feed(std::string_view(input).substr(90), sink));
  CHECK(stream.at_boundary());
  CHECK(sink.out == input);
  CHECK(stream.commands() == 2);
}

TEST_CASE("legacy stream: every split of a random stream gives the same output") {
  std::mt19937 rng(12345);
  StreamLimits small;
  small.max_held = 64;  // most commands cut by a feed pass through
  for (int round = 0; round < 30; round++) {
    CAPTURE(round);
    bool multibulk_only = round % 3 == 0;
    Scenario s = random_scenario(rng, 40, multibulk_only, round % 2 ? 70000 : 300);
    if (multibulk_only) {
      REQUIRE(s.only_multibulk_commands);
      REQUIRE(s.expected == s.input);  // byte-identical
    }
    for (const StreamLimits& limits : {StreamLimits{}, small}) {
      check_scenario(s, limits, {s.input.size()});
      check_scenario(s, limits, random_sizes(rng, s.input.size(), 7));
      check_scenario(s, limits, random_sizes(rng, s.input.size(), 100));
      check_scenario(s, limits, random_sizes(rng, s.input.size(), 5000));
      if (s.input.size() < 100000) check_scenario(s, limits, bytewise(s.input.size()));
    }
  }
}

namespace {

struct ErrorCase {
  std::string input;
  uint64_t position;       // the reported byte
  std::string delivered;   // the stream bytes before the bad command
  std::string message;     // part of error()
};

}  // namespace

TEST_CASE("legacy stream: protocol errors stop the stream at the bad command") {
  const std::string good = mb({"SET", "a", "1"});  // 27 bytes
  StreamLimits limits;
  limits.max_inline_len = 100;
  limits.max_multibulk_count = 1000;
  limits.max_bulk_len = 1000;
  const std::vector<ErrorCase> cases = {
      {good + "$3\r\nfoo\r\n", 27, good, "'$' where a command should start"},
      {good + "-ERR Unrecognized REPLCONF option: ack\r\n", 27, good, "'-' where a command should start"},
      {good + "+OK\r\n", 27, good, "'+' where a command should start"},
      {good + ":1\r\n", 27, good, "':' where a command should start"},
      {good + "*x\r\n", 27, good, "invalid multibulk length '*x'"},
      {good + "*01\r\n$1\r\na\r\n", 27, good, "invalid multibulk length"},
      {good + "*1001\r\n", 27, good, "invalid multibulk length"},
      {good + "*2\rX", 27, good, "CR not followed by LF"},
      {good + std::string("*").append(40, '1') + "\r\n", 27, good, "multibulk count line too long"},
      {good + "*1\r\n$x\r\n", 31, good, "invalid bulk length '$x'"},
      {good + "*1\r\n$-1\r\n", 31, good, "invalid bulk length"},
      {good + "*1\r\n$1001\r\n", 31, good, "invalid bulk length"},
      {good + std::string("*1\r\n$").append(40, '1'), 31, good, "bulk length line too long"},
      {good + "*1\r\n:3\r\n", 31, good, "expected '$', got ':'"},
      {good + "*2\r\n$1\r\na\r\n*1\r\n", 38, good, "expected '$', got '*'"},
      {good + "*1\r\n$3\r\nfooX\r\n", 38, good, "bulk argument not followed by CRLF"},
      {good + "*1\r\n$3\r\nfoo\rX", 39, good, "bulk argument not followed by CRLF"},
      {good + std::string("select 1\r\n").append(101, 'x') + "\n", 37, good + mb({"SELECT", "1"}),
       "inline command longer than 100 bytes"},
      {good + std::string(200, 'x'), 27, good, "inline command longer than 100 bytes"},
      {good + "set a \"b\r\n", 27, good, "unbalanced quotes"},
  };
  std::mt19937 rng(99);
  for (const auto& c : cases) {
    CAPTURE(c.input);
    std::string first_error;
    std::vector<std::vector<size_t>> splits = {{c.input.size()}, bytewise(c.input.size()),
                                               random_sizes(rng, c.input.size(), 5),
                                               random_sizes(rng, c.input.size(), 20)};
    for (const auto& sizes : splits) {
      LegacyStream stream(limits);
      RecordingSink sink;
      CHECK_FALSE(feed_split(stream, c.input, sizes, sink));
      CHECK(sink.out == c.delivered);
      CHECK(stream.bytes_in() == c.position);
      CHECK(stream.error().find("at byte " + std::to_string(c.position) + ":") != std::string::npos);
      CHECK(stream.error().find(c.message) != std::string::npos);
      if (first_error.empty()) first_error = stream.error();
      CHECK(stream.error() == first_error);  // the same error for every split
      // Refuses more input until reset.
      CHECK_FALSE(stream.feed(good, sink));
      CHECK(sink.out == c.delivered);
      stream.reset();
      CHECK(stream.error().empty());
      CHECK(stream.bytes_in() == 0);
      CHECK(stream.commands() == 0);
      RecordingSink fresh;
      CHECK(stream.feed(good, fresh));
      CHECK(fresh.out == good);
    }
  }
}

TEST_CASE("legacy stream: corrupted input fails the same way for every split") {
  std::mt19937 rng(2024);
  StreamLimits limits;
  limits.max_held = 128;
  limits.max_inline_len = 256;
  limits.max_bulk_len = 100000;
  struct Result {
    bool ok;
    std::string out, error;
    std::vector<size_t> pings;
    uint64_t commands, bytes_in;
  };
  auto run = [&](const std::string& input, const std::vector<size_t>& sizes) {
    LegacyStream stream(limits);
    RecordingSink sink;
    bool ok = feed_split(stream, input, sizes, sink);
    return Result{ok, sink.out, stream.error(), sink.pings, stream.commands(), stream.bytes_in()};
  };
  size_t failures = 0;
  for (int round = 0; round < 3000; round++) {
    std::string input = random_scenario(rng, 6, false, 300).input;
    for (int i = 0; i < 2 && !input.empty(); i++) {
      input[rng() % input.size()] = "*$\r\n0123-x \"'"[rng() % 14];
    }
    CAPTURE(input);
    Result whole = run(input, {input.size()});
    failures += whole.ok ? 0 : 1;
    for (const auto& sizes : {bytewise(input.size()), random_sizes(rng, input.size(), 40)}) {
      Result split = run(input, sizes);
      CHECK(split.ok == whole.ok);
      CHECK(split.error == whole.error);
      CHECK(split.pings == whole.pings);
      CHECK(split.commands == whole.commands);
      CHECK(split.bytes_in == whole.bytes_in);
      // A command passed through in pieces may have been partly delivered
      // before its error showed; everything before it is the same.
      CHECK(split.out.starts_with(whole.out));
      if (whole.ok) CHECK(split.out == whole.out);
    }
  }
  CHECK(failures > 300);  // the corruption did produce errors
}

TEST_CASE("legacy stream: each boundary carries the upstream position just past its command") {
  const std::string set = mb({"SET", "k", "v"});     // whole
  const std::string ping = "*1\r\n$4\r\nPING\r\n";   // dropped, still a boundary
  const std::string sel = "select 3\r\n";          // inline: re-encoded, so longer in the output
  const std::string big = mb({"SET", "big", std::string(200000, 'x')});
  StreamLimits limits;
  limits.max_held = 1024;
  LegacyStream s(limits);
  RecordingSink sink;
  REQUIRE(s.feed(set + ping, sink));
  uint64_t in = set.size() + ping.size();
  REQUIRE(!sink.marks.empty());
  CHECK(sink.marks.back() == std::pair<uint64_t, size_t>{in, set.size()});
  // Half of a small command: held, no boundary until its last byte.
  size_t marks = sink.marks.size();
  REQUIRE(s.feed(set.substr(0, 10), sink));
  CHECK(sink.marks.size() == marks);
  REQUIRE(s.feed(set.substr(10), sink));
  in += set.size();
  CHECK(sink.marks.back() == std::pair<uint64_t, size_t>{in, 2 * set.size()});
  // An inline select cut in two: its boundary is past its LF upstream, past
  // its multibulk form in the output.
  REQUIRE(s.feed(sel.substr(0, 4), sink));
  REQUIRE(s.feed(sel.substr(4), sink));
  in += sel.size();
  const size_t out_after_select = 2 * set.size() + mb({"SELECT", "3"}).size();
  CHECK(sink.marks.back() == std::pair<uint64_t, size_t>{in, out_after_select});
  // A large command passed through in pieces: no boundary until its last byte.
  marks = sink.marks.size();
  REQUIRE(s.feed(big.substr(0, 100000), sink));
  CHECK_FALSE(s.at_boundary());
  CHECK(sink.marks.size() == marks);
  REQUIRE(s.feed(big.substr(100000), sink));
  CHECK(s.at_boundary());
  in += big.size();
  CHECK(sink.marks.back() == std::pair<uint64_t, size_t>{in, out_after_select + big.size()});
  CHECK(in == s.bytes_in());
}

TEST_CASE("legacy stream: commands before a protocol error in the same feed keep their own positions") {
  // Found by the fuzzer: the error moved the feed's base, and the SET before it was
  // reported as ending past the bytes fed (a resume point past the log's end).
  const std::string set = mb({"SET", "a", "1"});
  LegacyStream s;
  RecordingSink sink;
  CHECK_FALSE(s.feed(set + "+OK\r\n", sink));
  REQUIRE(sink.marks.size() == 1);
  CHECK(sink.marks[0] == std::pair<uint64_t, size_t>{set.size(), set.size()});
  CHECK(s.bytes_in() == set.size());  // the error's position
}
