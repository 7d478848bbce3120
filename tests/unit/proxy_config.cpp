#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/proxy.h"
#include "proxy/status_http.h"

using namespace psync::proxy;

namespace {
ParseResult parse(std::vector<std::string> args) {
  args.insert(args.begin(), "psync-proxy");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse_args(static_cast<int>(argv.size()), argv.data());
}
}  // namespace

TEST_CASE("config: defaults and every flag") {
  auto r = parse({"--upstream", "10.0.0.5:6379"});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.upstream.host == "10.0.0.5");
  CHECK(r.config.upstream.port == 6379);
  CHECK(r.config.bind == "127.0.0.1");
  CHECK(r.config.port == 6380);
  CHECK(r.config.status_bind == "127.0.0.1");
  CHECK(r.config.status_port == 8380);
  CHECK(r.config.dir == "./psync-data");
  CHECK(r.config.backlog_size == 256ull << 20);

  r = parse({"--upstream", "[::1]:7000", "--port", "7001", "--bind", "0.0.0.0", "--status-bind",
             "127.0.0.2", "--status-port", "0", "--dir", "/var/lib/x", "--backlog-size", "1gb",
             "--masterauth", "s3cret", "--requirepass", "pw", "--log-level", "debug"});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.upstream.host == "::1");
  CHECK(r.config.upstream.str() == "[::1]:7000");
  CHECK(r.config.port == 7001);
  CHECK(r.config.status_bind == "127.0.0.2");
  CHECK(r.config.status_port == 0);
  CHECK(r.config.backlog_size == 1ull << 30);
  CHECK(r.config.masterauth == "s3cret");
  CHECK(r.config.requirepass == "pw");
  CHECK(r.config.log_level == LogLevel::kDebug);
}

TEST_CASE("config: a bad flag or value exits with code 2") {
  for (auto args : std::vector<std::vector<std::string>>{
           {},                                                   // no upstream
           {"--upstream", "nohost"},                             // no port
           {"--upstream", "h:0"},                                // port 0
           {"--upstream", "h:70000"},                            // port too big
           {"--upstream", "h:1", "--port", "0"},
           {"--upstream", "h:1", "--backlog-size", "lots"},
           {"--upstream", "h:1", "--backlog-size", "-5mb"},
           {"--upstream", "h:1", "--log-level", "loud"},
           {"--upstream", "h:1", "--no-such-flag"},
           {"--upstream", "h:1", "--port", "abc"},
           {"--upstream", "h:1", "--tls-port", "6390"},  // no certificate
           {"--upstream", "h:1", "--tls-port", "6390", "--tls-cert-file", "c", "--tls-key-file", "k"},  // no CA
           {"--upstream", "h:1", "--tls-port", "6380", "--tls-cert-file", "c", "--tls-key-file", "k",
            "--tls-auth-clients", "no"},  // the plain port's
           {"--upstream", "h:1", "--tls-auth-clients", "maybe"},
           {"--upstream", "h:1", "--status-tls", "yes"},  // no certificate
           {"--upstream", "h:1", "--standby-of", "nohost"},
           {"--upstream", "h:1", "--standby-timeout", "-1"},
       }) {
    CAPTURE(args.size());
    auto r = parse(args);
    CHECK(r.exit);
    CHECK(r.exit_code == 2);
  }
  auto help = parse({"--help"});
  CHECK(help.exit);
  CHECK(help.exit_code == 0);
}

TEST_CASE("config: TLS and standby flags") {
  auto r = parse({"--upstream", "h:1", "--tls-port", "6390", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem",
                  "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "optional", "--status-tls", "yes",
                  "--standby-of", "10.0.0.7:6380", "--standby-timeout", "5"});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.tls_port == 6390);
  CHECK(r.config.tls_auth_clients == psync::proxy::TlsAuthClients::kOptional);
  CHECK(r.config.status_tls);
  CHECK(r.config.has_standby_of);
  CHECK(r.config.standby_of.str() == "10.0.0.7:6380");
  CHECK(r.config.standby_timeout_s == 5);
  // No CA is needed when no client certificate is asked for.
  auto n = parse({"--upstream", "h:1", "--tls-port", "6390", "--tls-cert-file", "c", "--tls-key-file", "k",
                  "--tls-auth-clients", "no"});
  CHECK_FALSE(n.exit);
}

TEST_CASE("status endpoint: paths and methods") {
  auto health = StatusServer::respond(nullptr, "GET", "/healthz");
  CHECK(health.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  auto missing = StatusServer::respond(nullptr, "GET", "/nope");
  CHECK(missing.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
  CHECK(missing.find("application/json") != std::string::npos);
  CHECK(missing.find("\"error\"") != std::string::npos);
  auto post = StatusServer::respond(nullptr, "POST", "/status");
  CHECK(post.rfind("HTTP/1.1 405", 0) == 0);
}

TEST_CASE("replication IDs are 40 lower-case hex and differ") {
  std::string a = random_replid(), b = random_replid();
  CHECK(a.size() == 40);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(a != b);
}

TEST_CASE("password comparison") {
  CHECK(constant_time_equals("secret", "secret"));
  CHECK_FALSE(constant_time_equals("secret", "secreT"));
  CHECK_FALSE(constant_time_equals("secret", "secret2"));
  CHECK_FALSE(constant_time_equals("", "x"));
  CHECK(constant_time_equals("", ""));
}

TEST_CASE("status endpoint: HTTP request reading") {
  auto r = parse_http_request("GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(r.complete);
  CHECK(r.error.empty());
  CHECK(r.method == "GET");
  CHECK(r.url == "/status");
  auto partial = parse_http_request("GET /status HTTP/1.1\r\nHost:");
  CHECK_FALSE(partial.complete);
  CHECK(partial.error.empty());
  auto bad = parse_http_request("GARBAGE\r\n\r\n");
  CHECK_FALSE(bad.complete);
  CHECK_FALSE(bad.error.empty());
  auto head = parse_http_request("HEAD /healthz?x=1 HTTP/1.0\r\n\r\n");
  CHECK(head.complete);
  CHECK(head.method == "HEAD");
  CHECK(StatusServer::respond(nullptr, head.method, head.url).find("ok\n") == std::string::npos);
}

namespace {
std::string write_temp(const std::string& text) {
  char path[] = "/tmp/psync-conf-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  return path;
}
}  // namespace

TEST_CASE("config file: redis.conf style, flags override it") {
  std::string path = write_temp(
      "# psync-proxy\n"
      "upstream 10.0.0.5:6379\n"
      "\n"
      "   port 7000   \n"
      "requirepass \"two words\"\n"
      "backlog-size 1gb\r\n"
      "log-format json\n");
  auto r = parse({"--config", path, "--port", "7001"});
  unlink(path.c_str());
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.upstream.str() == "10.0.0.5:6379");
  CHECK(r.config.port == 7001);  // the flag wins
  CHECK(r.config.requirepass == "two words");
  CHECK(r.config.backlog_size == 1ull << 30);
  CHECK(r.config.log_json);
}

TEST_CASE("config file: an unknown name or a bad value names the line") {
  Config c;
  std::string error;
  std::string path = write_temp("upstream h:1\nprot 6380\n");
  CHECK_FALSE(apply_config_file(path, c, error));
  CHECK(error == path + ":2: unknown option 'prot'");
  unlink(path.c_str());

  path = write_temp("# comment\nport 99999\n");
  CHECK_FALSE(apply_config_file(path, c, error));
  CHECK(error.find(path + ":2: port: expected a port") == 0);
  unlink(path.c_str());

  path = write_temp("port\n");
  CHECK_FALSE(apply_config_file(path, c, error));
  CHECK(error == path + ":1: port: expected one value, got 0");
  unlink(path.c_str());

  CHECK_FALSE(apply_config_file("/nonexistent/psync.conf", c, error));
  CHECK(error.find("cannot read") != std::string::npos);

  path = write_temp("upstream h:1\nlog-level chatty\n");
  auto r = parse({"--config", path});
  unlink(path.c_str());
  CHECK(r.exit);
  CHECK(r.exit_code == 2);
}

TEST_CASE("config: --replica-timeout: seconds > 0, default 60, in the config file too") {
  CHECK(parse({"--upstream", "h:1"}).config.replica_timeout_s == 60);
  auto r = parse({"--upstream", "h:1", "--replica-timeout", "2.5"});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.replica_timeout_s == 2.5);
  for (const char* bad : {"0", "-1", "soon", ""}) {
    CAPTURE(bad);
    r = parse({"--upstream", "h:1", "--replica-timeout", bad});
    CHECK(r.exit);
    CHECK(r.exit_code == 2);
  }
  std::string path = write_temp("upstream h:1\nreplica-timeout 7\n");
  r = parse({"--config", path});
  unlink(path.c_str());
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.replica_timeout_s == 7);
}

TEST_CASE("config: --requirepass-file and --masterauth-file read the password, trailing newlines dropped") {
  std::string req = write_temp("from the file\n");
  std::string auth = write_temp("m4ster\r\n");
  auto r = parse({"--upstream", "h:1", "--requirepass-file", req, "--masterauth-file", auth});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.requirepass == "from the file");
  CHECK(r.config.masterauth == "m4ster");
  // Inner newlines and spaces are the password's.
  std::string odd = write_temp(" two\nlines \n\n");
  r = parse({"--upstream", "h:1", "--requirepass-file", odd});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.requirepass == " two\nlines ");
  // In the config file, by the same names.
  std::string conf = write_temp("upstream h:1\nrequirepass-file " + req + "\nmasterauth-file " + auth + "\n");
  r = parse({"--config", conf});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.requirepass == "from the file");
  CHECK(r.config.masterauth == "m4ster");
  // --masteruser is satisfied by a masterauth from a file.
  r = parse({"--upstream", "h:1", "--masteruser", "u", "--masterauth-file", auth});
  CHECK_FALSE(r.exit);
  for (const auto& p : {req, auth, odd, conf}) unlink(p.c_str());
}

TEST_CASE("config: a missing, empty or huge password file, or a password given two ways, is an error naming it") {
  Config c;
  std::string out = "unchanged", error;
  CHECK(read_secret_file("/nonexistent/pw", out) == "cannot read /nonexistent/pw: No such file or directory");
  std::string empty = write_temp("\n");
  CHECK(read_secret_file(empty, out) == empty + " is empty (it must hold the password)");
  std::string huge = write_temp(std::string(70 * 1024, 'p'));
  CHECK(read_secret_file(huge, out) == huge + " is larger than 64 KB: not a password file");
  CHECK(out == "unchanged");
  CHECK(parse({"--upstream", "h:1", "--requirepass-file", "/nonexistent/pw"}).exit_code == 2);
  CHECK(parse({"--upstream", "h:1", "--masterauth-file", empty}).exit_code == 2);

  std::string pw = write_temp("pw\n");
  CHECK(parse({"--upstream", "h:1", "--requirepass", "x", "--requirepass-file", pw}).exit_code == 2);
  CHECK(parse({"--upstream", "h:1", "--masterauth", "x", "--masterauth-file", pw}).exit_code == 2);
  // One in the config file, the other as a flag: an error too, naming both.
  std::string conf = write_temp("upstream h:1\nrequirepass inline\n");
  CHECK(parse({"--config", conf, "--requirepass-file", pw}).exit_code == 2);
  std::string both = write_temp("upstream h:1\nrequirepass-file " + pw + "\nrequirepass inline\n");
  CHECK_FALSE(apply_config_file(both, c, error));
  CHECK(error == both + ":3: requirepass: cannot be given with requirepass-file (the same password two ways): keep one");
  // The same form twice: the flag overrides the file, as for every option.
  auto r = parse({"--config", conf, "--requirepass", "flag"});
  REQUIRE_FALSE(r.exit);
  CHECK(r.config.requirepass == "flag");
  for (const auto& p : {empty, huge, pw, conf, both}) unlink(p.c_str());
}

TEST_CASE("config: passwords given as flags are overwritten in argv, nothing else is") {
  std::vector<std::string> args = {"psync-proxy", "--upstream", "h:1", "--requirepass", "s3cret",
                                   "--masterauth=m4ster", "--requireuser", "s3cret-user", "--requirepass-file",
                                   "/run/pw"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  CHECK(hide_secret_args(static_cast<int>(argv.size()), argv.data()) == "--requirepass, --masterauth");
  CHECK(std::string(argv[4]) == "xxxxxx");
  CHECK(std::string(argv[5]) == "--masterauth=xxxxxx");
  CHECK(std::string(argv[7]) == "s3cret-user");
  CHECK(std::string(argv[9]) == "/run/pw");
  std::vector<std::string> none = {"psync-proxy", "--upstream", "h:1", "--requirepass"};  // no value
  argv.clear();
  for (auto& a : none) argv.push_back(a.data());
  CHECK(hide_secret_args(static_cast<int>(argv.size()), argv.data()).empty());
}
