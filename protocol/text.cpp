#include "protocol/text.h"

#include <cstdio>

namespace psync::protocol {

std::string quoted(std::string_view s) {
  constexpr size_t kShown = 64;
  std::string out = "'";
  for (char c : s.substr(0, kShown)) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  out += s.size() > kShown ? "'..." : "'";
  return out;
}

}  // namespace psync::protocol
