#include "protocol/text.h"

#include <algorithm>

namespace psync::protocol {

namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr std::string_view kCut = "...";

bool printable(char c) { return c >= 0x20 && c < 0x7f; }

// Appends the escaped form of bytes to out, stopping before the first byte
// whose whole form would take out past limit bytes. false when it stopped
// before the end of bytes.
bool append_escaped(std::string& out, std::string_view bytes, size_t limit) {
  for (char c : bytes) {
    size_t need = printable(c) ? 1 : 4;
    if (out.size() + need > limit) return false;
    if (need == 1) {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return true;
}

}  // namespace

std::string peer_text(std::string_view bytes, size_t max_len) {
  std::string out;
  out.reserve(std::min(max_len, bytes.size() * 4));
  if (append_escaped(out, bytes, max_len)) return out;
  // Cut: make room for "..." by dropping whole escapes or characters.
  out.clear();
  size_t room = max_len > kCut.size() ? max_len - kCut.size() : 0;
  append_escaped(out, bytes, room);
  out.append(kCut.substr(0, std::min(kCut.size(), max_len)));
  return out;
}

std::string quoted(std::string_view s) {
  constexpr size_t kShown = 64;
  return "'" + peer_text(s, kShown) + "'";
}

bool is_replid(std::string_view s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

}  // namespace psync::protocol
