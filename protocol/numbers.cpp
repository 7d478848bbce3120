#include "protocol/numbers.h"

#include <limits>

namespace psync::protocol {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Digits only, at least one, value <= limit.
std::optional<uint64_t> parse_digits(std::string_view s, uint64_t limit) {
  if (s.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (limit - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

}  // namespace

std::optional<uint64_t> parse_u64(std::string_view s) {
  return parse_digits(s, std::numeric_limits<uint64_t>::max());
}

std::optional<int64_t> parse_i64(std::string_view s) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!s.empty() && s.front() == '-') {
    auto magnitude = parse_digits(s.substr(1), kMax + 1);
    if (!magnitude) return std::nullopt;
    if (*magnitude == kMax + 1) return std::numeric_limits<int64_t>::min();
    return -static_cast<int64_t>(*magnitude);
  }
  auto value = parse_digits(s, kMax);
  if (!value) return std::nullopt;
  return static_cast<int64_t>(*value);
}

std::optional<uint64_t> parse_memory_size(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && is_digit(s[digits])) digits++;
  std::string_view unit = s.substr(digits);

  uint64_t multiplier;
  if (unit.empty() || iequals(unit, "b")) {
    multiplier = 1;
  } else if (iequals(unit, "k")) {
    multiplier = 1000;
  } else if (iequals(unit, "kb")) {
    multiplier = 1024;
  } else if (iequals(unit, "m")) {
    multiplier = 1000 * 1000;
  } else if (iequals(unit, "mb")) {
    multiplier = 1024 * 1024;
  } else if (iequals(unit, "g")) {
    multiplier = 1000ull * 1000 * 1000;
  } else if (iequals(unit, "gb")) {
    multiplier = 1024ull * 1024 * 1024;
  } else {
    return std::nullopt;
  }

  auto value = parse_u64(s.substr(0, digits));
  if (!value) return std::nullopt;
  if (*value > std::numeric_limits<uint64_t>::max() / multiplier) return std::nullopt;
  return *value * multiplier;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

}  // namespace psync::protocol
