// Pure security decisions of the proxy: protected mode (who gets -DENIED) and the password
// comparison.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/proxy.h"

using namespace psync::proxy;

namespace {
Config config(const std::string& bind, const std::string& requirepass = "", bool protected_mode = true) {
  Config c;
  c.bind = bind;
  c.requirepass = requirepass;
  c.protected_mode = protected_mode;
  return c;
}
}  // namespace

TEST_CASE("protected mode: a non-loopback bind with no password refuses non-loopback peers") {
  for (const std::string bind : {"0.0.0.0", "10.1.2.3", "::", "192.168.0.10", "2001:db8::1"}) {
    CAPTURE(bind);
    const Config c = config(bind);
    CHECK(protected_mode_refuses(c, "10.1.2.4"));
    CHECK(protected_mode_refuses(c, "192.168.0.11"));
    CHECK(protected_mode_refuses(c, "2001:db8::2"));
    CHECK(protected_mode_refuses(c, "::ffff:10.1.2.4"));  // an IPv4 peer on a dual-stack socket
    CHECK(protected_mode_refuses(c, "128.0.0.1"));        // not 127/8
    CHECK(protected_mode_refuses(c, "::2"));
    // Loopback peers are always welcome: 127.0.0.0/8 and ::1, also as IPv4-mapped addresses.
    CHECK_FALSE(protected_mode_refuses(c, "127.0.0.1"));
    CHECK_FALSE(protected_mode_refuses(c, "127.255.3.4"));
    CHECK_FALSE(protected_mode_refuses(c, "::1"));
    CHECK_FALSE(protected_mode_refuses(c, "::ffff:127.0.0.1"));
  }
}

TEST_CASE("protected mode: off with a password, with a loopback bind, or with --protected-mode no") {
  for (const std::string peer : {"10.1.2.4", "2001:db8::2", "::ffff:10.1.2.4"}) {
    CAPTURE(peer);
    CHECK_FALSE(protected_mode_refuses(config("0.0.0.0", "secret"), peer));
    CHECK_FALSE(protected_mode_refuses(config("0.0.0.0", "", false), peer));
    CHECK_FALSE(protected_mode_refuses(config("127.0.0.1"), peer));
    CHECK_FALSE(protected_mode_refuses(config("127.0.0.2"), peer));
    CHECK_FALSE(protected_mode_refuses(config("::1"), peer));
  }
  // The default configuration (bind 127.0.0.1) never refuses anyone.
  CHECK_FALSE(protected_mode_refuses(Config{}, "10.9.9.9"));
  CHECK(Config{}.protected_mode);
}

TEST_CASE("protected mode: --protected-mode yes|no is parsed, anything else is a configuration error") {
  auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), "psync-proxy");
    args.insert(args.end(), {"--upstream", "127.0.0.1:6379"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return parse_args(static_cast<int>(argv.size()), argv.data());
  };
  auto yes = parse({"--protected-mode", "yes"});
  REQUIRE_FALSE(yes.exit);
  CHECK(yes.config.protected_mode);
  auto no = parse({"--protected-mode", "no"});
  REQUIRE_FALSE(no.exit);
  CHECK_FALSE(no.config.protected_mode);
  auto bad = parse({"--protected-mode", "maybe"});
  CHECK(bad.exit);
  CHECK(bad.exit_code == 2);
}

TEST_CASE("constant_time_equals: equality on every byte and the length") {
  CHECK(constant_time_equals("", ""));
  CHECK(constant_time_equals("secret", "secret"));
  CHECK(constant_time_equals(std::string("a\0b", 3), std::string("a\0b", 3)));
  CHECK_FALSE(constant_time_equals("secret", "secreT"));
  CHECK_FALSE(constant_time_equals("secret", "Secret"));
  CHECK_FALSE(constant_time_equals("secret", "secret "));
  CHECK_FALSE(constant_time_equals("secret", "secre"));
  CHECK_FALSE(constant_time_equals("", "x"));
  CHECK_FALSE(constant_time_equals("x", ""));
  // A prefix padded with NULs is not the password.
  CHECK_FALSE(constant_time_equals(std::string("abc\0", 4), "abc"));
  CHECK_FALSE(constant_time_equals("abc", std::string("abc\0", 4)));
  const std::string long_pw(1000, 'p');
  CHECK(constant_time_equals(long_pw, std::string(1000, 'p')));
  CHECK_FALSE(constant_time_equals(long_pw, std::string(999, 'p') + "q"));
}
