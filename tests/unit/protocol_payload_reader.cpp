// Tests of the SYNC/PSYNC payload framing reader (protocol/payload_reader.h).
#include <doctest/doctest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "protocol/payload_reader.h"

using psync::protocol::PayloadReader;
using psync::protocol::PayloadSink;
using Status = PayloadReader::Status;

namespace {

const std::string kMark = "0123456789abcdef0123456789abcdef01234567";  // 40 bytes
const std::string kStream = "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n";

// Records the events, with the payload bytes gathered apart.
struct RecordingSink : PayloadSink {
  std::vector<std::string> events;
  std::string data;
  size_t empty_chunks = 0;

  void on_keepalive() override { events.push_back("keepalive"); }
  void on_status_line(std::string_view line) override { events.push_back("status " + std::string(line)); }
  void on_payload_start(std::optional<uint64_t> len) override {
    events.push_back(len ? "start " + std::to_string(*len) : "start eof");
  }
  void on_payload_data(std::string_view chunk) override {
    if (chunk.empty()) empty_chunks++;
    data.append(chunk);
  }
  void on_payload_end() override { events.push_back("end"); }
};

// The outcome of feeding an input in pieces until the reader finishes.
struct Outcome {
  Status status = Status::kNeedMore;
  size_t stop = 0;  // offset in the input where the reader stopped consuming
  std::vector<std::string> events;
  std::string data;
  std::string error;
  bool error_is_reply = false;
  std::string continue_line;
  bool operator==(const Outcome&) const = default;
};

Outcome read_split(std::string_view input, const std::vector<size_t>& sizes) {
  PayloadReader reader;
  RecordingSink sink;
  Outcome out;
  size_t pos = 0;
  for (size_t i = 0; pos < input.size(); i++) {
    size_t n = i < sizes.size() ? std::min(sizes[i], input.size() - pos) : input.size() - pos;
    size_t consumed = 12345;
    out.status = reader.feed(input.substr(pos, n), consumed, sink);
    REQUIRE(consumed <= n);
    if (out.status == Status::kNeedMore) REQUIRE(consumed == n);
    pos += consumed;
    if (out.status != Status::kNeedMore) break;
  }
  out.stop = pos;
  out.events = sink.events;
  out.data = sink.data;
  out.error = reader.error();
  out.error_is_reply = reader.error_is_reply();
  out.continue_line = reader.continue_line();
  CHECK(sink.empty_chunks == 0);
  CHECK(reader.payload_bytes() == sink.data.size());
  return out;
}

Outcome read_whole(std::string_view input) { return read_split(input, {input.size()}); }

// Checks that splitting the input in two at every position, and feeding it
// byte by byte, gives the same outcome as feeding it whole.
void check_every_split(std::string_view input) {
  Outcome whole = read_whole(input);
  for (size_t at = 0; at <= input.size(); at++) {
    CAPTURE(at);
    CHECK(read_split(input, {at}) == whole);
  }
  CHECK(read_split(input, std::vector<size_t>(input.size(), 1)) == whole);
}

}  // namespace

TEST_CASE("payload reader: SYNC reply with keepalives, then $len and the RDB") {
  std::string rdb = std::string("REDIS0006\xfe\x00\r\n$3\r\n\n", 18).append(1000, 'r');
  std::string input = "\n\n\n$" + std::to_string(rdb.size()) + "\r\n" + rdb + kStream;
  Outcome o = read_whole(input);
  CHECK(o.status == Status::kDone);
  CHECK(o.events == std::vector<std::string>{"keepalive", "keepalive", "keepalive",
                                             "start " + std::to_string(rdb.size()), "end"});
  CHECK(o.data == rdb);
  CHECK(input.substr(o.stop) == kStream);  // no CRLF after the RDB: the stream follows at once
  check_every_split(input);
}

TEST_CASE("payload reader: CRLF keepalives") {
  std::string input = "\r\n\n\r\n$2\r\nab";
  Outcome o = read_whole(input);
  CHECK(o.status == Status::kDone);
  CHECK(o.events == std::vector<std::string>{"keepalive", "keepalive", "keepalive", "start 2", "end"});
  CHECK(o.stop == input.size());
  check_every_split(input);
}

TEST_CASE("payload reader: payload data is passed without a copy") {
  std::string input = "$10\r\n0123456789rest";
  struct ViewSink : PayloadSink {
    std::vector<std::string_view> chunks;
    void on_payload_start(std::optional<uint64_t>) override {}
    void on_payload_data(std::string_view chunk) override { chunks.push_back(chunk); }
    void on_payload_end() override {}
  } sink;
  PayloadReader reader;
  size_t consumed = 0;
  CHECK(reader.feed(input, consumed, sink) == Status::kDone);
  CHECK(consumed == 15);
  REQUIRE(sink.chunks.size() == 1);
  CHECK(sink.chunks[0].data() == input.data() + 5);
  CHECK(sink.chunks[0].size() == 10);
  CHECK(reader.payload_size() == 10u);
  CHECK(reader.payload_bytes() == 10u);
}

TEST_CASE("payload reader: an empty payload") {
  Outcome o = read_whole("$0\r\n" + kStream);
  CHECK(o.status == Status::kDone);
  CHECK(o.events == std::vector<std::string>{"start 0", "end"});
  CHECK(o.stop == 4);
  check_every_split("$0\r\n" + kStream);
}

TEST_CASE("payload reader: PSYNC full resync") {
  std::string id(40, 'a');
  std::string input = "+FULLRESYNC " + id + " 1000\r\n\n$5\r\nhello" + kStream;
  Outcome o = read_whole(input);
  CHECK(o.status == Status::kDone);
  CHECK(o.events == std::vector<std::string>{"status FULLRESYNC " + id + " 1000", "keepalive", "start 5", "end"});
  CHECK(o.data == "hello");
  CHECK(input.substr(o.stop) == kStream);
  check_every_split(input);
}

TEST_CASE("payload reader: PSYNC partial resync") {
  Outcome bare = read_whole("+CONTINUE\r\n" + kStream);
  CHECK(bare.status == Status::kContinue);
  CHECK(bare.continue_line == "CONTINUE");
  CHECK(bare.stop == 11);
  CHECK(bare.events.empty());
  check_every_split("+CONTINUE\r\n" + kStream);

  std::string id(40, 'b');
  Outcome with_id = read_whole("\n+CONTINUE " + id + "\r\n" + kStream);
  CHECK(with_id.status == Status::kContinue);
  CHECK(with_id.continue_line == "CONTINUE " + id);
  CHECK(with_id.stop == 53);
  check_every_split("\n+CONTINUE " + id + "\r\n" + kStream);

  // Another status line is only reported.
  Outcome other = read_whole("+CONTINUED\r\n$1\r\nx");
  CHECK(other.status == Status::kDone);
  CHECK(other.events.front() == "status CONTINUED");
}

TEST_CASE("payload reader: the master's error reply") {
  std::string input = "\n-ERR Unable to perform background save\r\n";
  Outcome o = read_whole(input + "more");
  CHECK(o.status == Status::kError);
  CHECK(o.error == "ERR Unable to perform background save");
  CHECK(o.error_is_reply);
  CHECK(o.stop == input.size());
  check_every_split(input + "more");
}

TEST_CASE("payload reader: an error reply that is not text is kept as ASCII-safe text, cut at 256 bytes") {
  Outcome o = read_whole("-ERR caf\xe9 closed\r\n");
  CHECK(o.status == Status::kError);
  CHECK(o.error_is_reply);
  CHECK(o.error == "ERR caf\\xe9 closed");
  // A long one (up to the 4 KB line limit): one log line's worth, "..." at the end.
  Outcome big = read_whole("-ERR " + std::string(3000, '\xff') + "\r\n");
  CHECK(big.status == Status::kError);
  CHECK(big.error.size() <= 256);
  CHECK(big.error.rfind("ERR \\xff\\xff", 0) == 0);
  CHECK(big.error.substr(big.error.size() - 3) == "...");
}

TEST_CASE("payload reader: $EOF: framing") {
  std::string data = "REDIS0009" + kMark.substr(0, 39) + "x" + kMark.substr(0, 20) + "\r\n" + kMark.substr(1);
  std::string input = "$EOF:" + kMark + "\r\n" + data + kMark + kStream;
  Outcome o = read_whole(input);
  CHECK(o.status == Status::kDone);
  CHECK(o.events == std::vector<std::string>{"start eof", "end"});
  CHECK(o.data == data);  // the mark is not delivered
  CHECK(input.substr(o.stop) == kStream);
  check_every_split(input);

  // A payload that is only the mark, or shorter than a mark.
  check_every_split("$EOF:" + kMark + "\r\n" + kMark);
  CHECK(read_whole("$EOF:" + kMark + "\r\n" + kMark).data.empty());
  CHECK(read_whole("$EOF:" + kMark + "\r\nab" + kMark).data == "ab");
  check_every_split("$EOF:" + kMark + "\r\nab" + kMark + "ab");
}

TEST_CASE("payload reader: $EOF: holds back no more than a mark's length") {
  PayloadReader reader;
  RecordingSink sink;
  size_t consumed = 0;
  CHECK(reader.feed("$EOF:" + kMark + "\r\n", consumed, sink) == Status::kNeedMore);
  CHECK(reader.payload_size() == std::nullopt);
  std::mt19937 rng(5);
  std::string sent;
  for (int i = 0; i < 500; i++) {
    std::string chunk(1 + rng() % 200, '\0');
    for (auto& c : chunk) c = kMark[rng() % kMark.size()];  // the mark's own bytes
    CHECK(reader.feed(chunk, consumed, sink) == Status::kNeedMore);
    CHECK(consumed == chunk.size());
    sent += chunk;
    CHECK(sink.data.size() + 40 >= sent.size());
    CHECK(sent.starts_with(sink.data));
  }
  CHECK(reader.feed(kMark + "tail", consumed, sink) == Status::kDone);
  CHECK(consumed == 40);
  CHECK(sink.data == sent);
}

TEST_CASE("payload reader: framing errors") {
  struct Case {
    std::string input;
    std::string message;
  };
  std::vector<Case> cases = {
      {"*1\r\n", "unexpected '*'"},
      {"\nx", "unexpected 'x'"},
      {std::string("\0", 1), "unexpected '\\x00'"},
      {"$abc\r\n", "bad payload length"},
      {"$-1\r\n", "bad payload length"},
      {"$\r\n", "bad payload length"},
      {"$18446744073709551616\r\n", "bad payload length"},
      {"$EOF:short\r\n", "bad $EOF: payload header"},
      {"$EOF:" + kMark + "x\r\n", "bad $EOF: payload header"},
      {"\rx\n", "unexpected line"},
      {std::string("+").append(5000, 'x'), "line longer than 4096 bytes"},
      {std::string("+").append(4096, 'x') + "\r\n", "line longer than 4096 bytes"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.input);
    Outcome o = read_whole(c.input);
    CHECK(o.status == Status::kError);
    CHECK_FALSE(o.error_is_reply);
    CHECK(o.error.find(c.message) != std::string::npos);
    CHECK(o.error.find('\n') == std::string::npos);
    if (c.input.size() < 200) check_every_split(c.input);
  }
  // The longest line accepted.
  Outcome longest = read_whole(std::string("+").append(4095, 'x') + "\r\n$0\r\n");
  CHECK(longest.status == Status::kDone);
}

TEST_CASE("payload reader: finished until reset") {
  PayloadReader reader;
  RecordingSink sink;
  size_t consumed = 99;
  CHECK(reader.feed("-ERR no\r\n$1\r\n", consumed, sink) == Status::kError);
  CHECK(consumed == 9);
  CHECK(reader.feed("$1\r\nx", consumed, sink) == Status::kError);
  CHECK(consumed == 0);
  CHECK(sink.events.empty());

  reader.reset();
  CHECK(reader.error().empty());
  CHECK_FALSE(reader.error_is_reply());
  CHECK(reader.feed("$1\r\nxy", consumed, sink) == Status::kDone);
  CHECK(consumed == 5);
  CHECK(reader.feed("y", consumed, sink) == Status::kDone);
  CHECK(consumed == 0);
  CHECK(sink.data == "x");

  reader.reset();
  CHECK(reader.payload_bytes() == 0);
  CHECK(reader.payload_size() == std::nullopt);
  CHECK(reader.feed("+CONTINUE\r\n", consumed, sink) == Status::kContinue);
  CHECK(reader.feed("+CONTINUE\r\n", consumed, sink) == Status::kContinue);
  CHECK(consumed == 0);
}

TEST_CASE("payload reader: random input never crashes and is split-independent") {
  std::mt19937 rng(31337);
  const std::string pieces[] = {"\n", "\r\n", "+FULLRESYNC x 1\r\n", "-ERR x\r\n", "$3\r\nabc", "$EOF:" + kMark + "\r\n",
                                kMark.substr(0, 17), kMark, "+CONTINUE\r\n", "$", "\r", "x", "12"};
  for (int round = 0; round < 3000; round++) {
    std::string input;
    int n = 1 + rng() % 6;
    for (int i = 0; i < n; i++) input += pieces[rng() % std::size(pieces)];
    CAPTURE(input);
    Outcome whole = read_whole(input);
    CHECK(read_split(input, std::vector<size_t>(input.size(), 1)) == whole);
    CHECK(read_split(input, {rng() % (input.size() + 1)}) == whole);
  }
}
