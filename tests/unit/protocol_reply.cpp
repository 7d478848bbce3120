// Tests of the RESP encoders (protocol/reply.h).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocol/reply.h"

using namespace psync::protocol;

TEST_CASE("reply: simple types") {
  CHECK(simple_string("OK") == "+OK\r\n");
  CHECK(simple_string("FULLRESYNC 0123 1000") == "+FULLRESYNC 0123 1000\r\n");
  CHECK(error_reply("ERR unknown command") == "-ERR unknown command\r\n");
  CHECK(integer_reply(0) == ":0\r\n");
  CHECK(integer_reply(-12) == ":-12\r\n");
  CHECK(integer_reply(INT64_MIN) == ":-9223372036854775808\r\n");
  CHECK(null_bulk() == "$-1\r\n");
  CHECK(array_header(0) == "*0\r\n");
  CHECK(array_header(3) == "*3\r\n");
}

TEST_CASE("reply: a status or error line cannot be broken by CR or LF") {
  CHECK(simple_string("a\r\nb") == "+a  b\r\n");
  CHECK(error_reply("ERR bad\nthing") == "-ERR bad thing\r\n");
}

TEST_CASE("reply: bulk strings are binary safe") {
  CHECK(bulk_string("") == "$0\r\n\r\n");
  CHECK(bulk_string("hello") == "$5\r\nhello\r\n");
  std::string binary("a\r\n\0b", 5);
  CHECK(bulk_string(binary) == std::string("$5\r\na\r\n\0b\r\n", 11));
  std::string big(1000, 'x');
  CHECK(bulk_string(big) == "$1000\r\n" + big + "\r\n");
}

TEST_CASE("reply: commands as multibulk") {
  CHECK(encode_command({"PING"}) == "*1\r\n$4\r\nPING\r\n");
  CHECK(encode_command({"SELECT", "3"}) == "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n");
  CHECK(encode_command({"REPLCONF", "GETACK", "*"}) == "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n");
  CHECK(encode_command({}) == "*0\r\n");

  std::string out = "prefix";
  append_command(out, std::vector<std::string>{"SET", "k", ""});
  CHECK(out == "prefix*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  std::string key = "key";
  append_command(out, std::vector<std::string_view>{"DEL", key});
  CHECK(out == "prefix*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$3\r\nDEL\r\n$3\r\nkey\r\n");
}
