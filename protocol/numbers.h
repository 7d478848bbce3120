// Strict number parsing for values peers and operators send.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace psync::protocol {

// Whole decimal string, optional leading '-', no spaces, no '+', no overflow.
std::optional<int64_t> parse_i64(std::string_view s);
// Whole decimal string of digits only, no overflow.
std::optional<uint64_t> parse_u64(std::string_view s);
// A byte size as redis.conf writes it: "1048576", "512k", "256mb", "1gb"
// (case-insensitive; k=1000, kb=1024, m=1000^2, mb=1024^2, g=1000^3, gb=1024^3).
std::optional<uint64_t> parse_memory_size(std::string_view s);

// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b);

}  // namespace psync::protocol
