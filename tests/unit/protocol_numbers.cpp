// Tests of the strict number parsers (protocol/numbers.h).
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "protocol/numbers.h"

using psync::protocol::iequals;
using psync::protocol::parse_i64;
using psync::protocol::parse_memory_size;
using psync::protocol::parse_u64;

TEST_CASE("parse_i64 accepts whole decimal strings") {
  CHECK(parse_i64("0") == 0);
  CHECK(parse_i64("-0") == 0);
  CHECK(parse_i64("42") == 42);
  CHECK(parse_i64("-42") == -42);
  CHECK(parse_i64("007") == 7);  // leading zeros are harmless here
  CHECK(parse_i64("9223372036854775807") == std::numeric_limits<int64_t>::max());
  CHECK(parse_i64("-9223372036854775808") == std::numeric_limits<int64_t>::min());
}

TEST_CASE("parse_i64 rejects anything else") {
  for (const char* s : {"", "-", "+1", " 1", "1 ", "1a", "a1", "1.0", "--1", "-+1", "0x10", "1e3",
                        "9223372036854775808", "-9223372036854775809", "99999999999999999999",
                        "18446744073709551616"}) {
    CAPTURE(s);
    CHECK_FALSE(parse_i64(s).has_value());
  }
  CHECK_FALSE(parse_i64(std::string_view("12\0", 3)).has_value());
}

TEST_CASE("parse_u64 accepts digits up to 2^64-1 only") {
  CHECK(parse_u64("0") == 0u);
  CHECK(parse_u64("6379") == 6379u);
  CHECK(parse_u64("18446744073709551615") == std::numeric_limits<uint64_t>::max());
  for (const char* s : {"", "-1", "-0", "+1", " 1", "1 ", "18446744073709551616", "184467440737095516150", "1_000"}) {
    CAPTURE(s);
    CHECK_FALSE(parse_u64(s).has_value());
  }
}

TEST_CASE("parse_memory_size reads redis.conf sizes") {
  CHECK(parse_memory_size("1048576") == 1048576u);
  CHECK(parse_memory_size("0") == 0u);
  CHECK(parse_memory_size("100b") == 100u);
  CHECK(parse_memory_size("512k") == 512000u);
  CHECK(parse_memory_size("512K") == 512000u);
  CHECK(parse_memory_size("1kb") == 1024u);
  CHECK(parse_memory_size("1KB") == 1024u);
  CHECK(parse_memory_size("2m") == 2000000u);
  CHECK(parse_memory_size("256mb") == 256ull * 1024 * 1024);
  CHECK(parse_memory_size("256Mb") == 256ull * 1024 * 1024);
  CHECK(parse_memory_size("3g") == 3000000000u);
  CHECK(parse_memory_size("1gb") == 1024ull * 1024 * 1024);
  CHECK(parse_memory_size("1gB") == 1024ull * 1024 * 1024);
  // The largest value that fits, and one more.
  CHECK(parse_memory_size("17179869183gb") == 17179869183ull * 1024 * 1024 * 1024);
  CHECK_FALSE(parse_memory_size("17179869184gb").has_value());
  CHECK_FALSE(parse_memory_size("18446744073709551616").has_value());
  CHECK_FALSE(parse_memory_size("18446744073709551615k").has_value());
}

TEST_CASE("parse_memory_size rejects malformed sizes") {
  for (const char* s : {"", "kb", "mb", "-1", "-1mb", "+1mb", "1 mb", " 1mb", "1mb ", "1tb", "1kib", "1.5gb",
                        "1bb", "0x10", "mb1", "1m b"}) {
    CAPTURE(s);
    CHECK_FALSE(parse_memory_size(s).has_value());
  }
}

TEST_CASE("iequals compares ASCII without case") {
  CHECK(iequals("PING", "ping"));
  CHECK(iequals("SeLeCt", "sElEcT"));
  CHECK(iequals("", ""));
  CHECK_FALSE(iequals("ping", "pin"));
  CHECK_FALSE(iequals("ping", "pong"));
  CHECK_FALSE(iequals("[", "{"));  // 0x5b vs 0x7b: not letters, no folding
  CHECK_FALSE(iequals("\xc9", "\xe9"));  // bytes above ASCII are compared as is
}
