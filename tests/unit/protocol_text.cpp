#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "protocol/text.h"

using psync::protocol::is_replid;
using psync::protocol::peer_text;
namespace text = psync::protocol;  // text::quoted: unqualified, ADL would find std::quoted too

namespace {
bool all_printable_ascii(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}
}  // namespace

TEST_CASE("peer text: printable ASCII is kept, every other byte becomes \\xHH") {
  CHECK(peer_text("ERR Unable to perform background save") == "ERR Unable to perform background save");
  CHECK(peer_text("caf\xe9 closed") == "caf\\xe9 closed");
  CHECK(peer_text(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(peer_text("\r\n\t\x7f\x80\xff") == "\\x0d\\x0a\\x09\\x7f\\x80\\xff");
  CHECK(peer_text("\xc3\xa9") == "\\xc3\\xa9");  // valid UTF-8 too: the output is ASCII only
  CHECK(peer_text(" ~\\'\"") == " ~\\'\"");       // the printable edges, backslash and quotes kept
  CHECK(peer_text("") == "");
}

TEST_CASE("peer text: every byte value gives printable ASCII that is valid JSON text") {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  const std::string out = peer_text(all, 4096);
  CHECK(out.size() == 95 + 161 * 4);  // 95 printable bytes, 161 escapes
  CHECK(all_printable_ascii(out));
  nlohmann::json j = out;
  CHECK_NOTHROW((void)j.dump());  // the default dump throws on invalid UTF-8
}

TEST_CASE("peer text: cut to at most N bytes of output, between escapes, with \"...\"") {
  // Fits exactly: not cut.
  CHECK(peer_text("abcdef", 6) == "abcdef");
  CHECK(peer_text("\xe9\xe9", 8) == "\\xe9\\xe9");
  // One byte too many: cut, "..." included in the N bytes.
  CHECK(peer_text("abcdefg", 6) == "abc...");
  // An escape never split: "\xe9" (4 bytes) does not fit in the 3 left after "ab".
  CHECK(peer_text("ab\xe9zzzz", 8) == "ab...");
  CHECK(peer_text("\xe9\xe9\xe9", 10) == "\\xe9...");
  // N smaller than "...".
  CHECK(peer_text("abcdef", 2) == "..");
  CHECK(peer_text("abcdef", 0) == "");
  // Every N: never longer than N, ASCII only, and what comes before "..." is the whole text
  // up to the end of a character or escape, as much of it as fits.
  const std::string hostile = "x\xe9y\x01\xff" + std::string(50, '\x80') + "tail";  // no backslash
  const std::string whole = peer_text(hostile, 4096);
  std::vector<size_t> ends;  // where each character or escape of `whole` ends
  for (size_t i = 0; i < whole.size(); i += whole[i] == '\\' ? 4 : 1) ends.push_back(i + (whole[i] == '\\' ? 4 : 1));
  for (size_t n = 0; n < 300; ++n) {
    CAPTURE(n);
    const std::string out = peer_text(hostile, n);
    CHECK(out.size() <= n);
    CHECK(all_printable_ascii(out));
    if (whole.size() <= n) {
      CHECK(out == whole);
      continue;
    }
    if (n < 3) {
      CHECK(out == std::string(n, '.'));
      continue;
    }
    REQUIRE(out.size() >= 3);
    CHECK(out.substr(out.size() - 3) == "...");
    const std::string body = out.substr(0, out.size() - 3);
    CHECK(whole.compare(0, body.size(), body) == 0);
    size_t longest = 0;
    for (size_t e : ends) {
      if (e <= n - 3) longest = e;
    }
    CHECK(body.size() == longest);
  }
}

TEST_CASE("peer text: applied to its own output it changes nothing") {
  const std::string once = peer_text("caf\xe9 \\x41 \x01");
  CHECK(once == "caf\\xe9 \\x41 \\x01");
  CHECK(peer_text(once) == once);
}

TEST_CASE("quoted: peer text in single quotes, cut at 64 bytes") {
  CHECK(text::quoted("abc") == "'abc'");
  CHECK(text::quoted(std::string(1, '\0')) == "'\\x00'");
  CHECK(text::quoted(std::string(64, 'a')) == "'" + std::string(64, 'a') + "'");
  CHECK(text::quoted(std::string(65, 'a')) == "'" + std::string(61, 'a') + "...'");
  CHECK(text::quoted(std::string(100, '\xff')).size() <= 66);
}

TEST_CASE("is_replid: exactly 40 hex digits") {
  CHECK(is_replid("5f1c0e6a3b2d4c8e9f00112233445566778899aa"));
  CHECK(is_replid("5F1C0E6A3B2D4C8E9F00112233445566778899AA"));
  CHECK_FALSE(is_replid(""));
  CHECK_FALSE(is_replid("5f1c0e6a3b2d4c8e9f00112233445566778899a"));    // 39
  CHECK_FALSE(is_replid("5f1c0e6a3b2d4c8e9f00112233445566778899aa0"));  // 41
  CHECK_FALSE(is_replid("5f1c0e6a3b2d4c8e9f00112233445566778899ag"));
  CHECK_FALSE(is_replid(std::string(40, '\xe9')));
  CHECK_FALSE(is_replid("5f1c0e6a3b2d4c8e9f001122334455667788 9aa"));
}
