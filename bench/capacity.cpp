// Scenario 2, proxy capacity: a scripted SYNC-only upstream that replays a
// prepared stream as fast as the socket takes it, and N replica sinks that
// read from the proxy as fast as they can.
//
//   bench_capacity --listen PORT --proxy-port P --proxy-pid PID --rdb FILE
//                  --sinks N --bytes B [--ready-file F] [--timeout S] [--copy]
//                  [--tls CA_FILE CERT_FILE KEY_FILE]
//                  (or --proxy-pid-file F: read once the sinks are online)
//
// With --tls the sinks connect with TLS (OpenSSL, TLS 1.3, the certificate
// given) to --proxy-port, which is then the proxy's --tls-port; they decrypt
// everything they receive (SSL_read into a buffer) and count the plaintext.
//
// 1. Listens on 127.0.0.1:PORT (writes --ready-file once it does) and plays a
//    2.6 master to the proxy that connects: +OK to REPLCONF listening-port,
//    -ERR unknown command 'PSYNC' to PSYNC, and to SYNC: $<len>\r\n + the RDB.
// 2. Connects N sinks to the proxy: PING, REPLCONF listening-port,
//    REPLCONF capa psync2, PSYNC ? -1 (retried while -NOMASTERLINK), reads
//    +FULLRESYNC, $len and the RDB.
// 3. Writes the prepared stream (a realistic 2.6 stream, whole commands,
//    replayed cyclically) until B bytes went out, while the sinks count what
//    they receive (recv with MSG_TRUNC: the kernel drops the bytes, so the
//    sinks cost next to nothing; --copy reads them into a buffer instead).
// 4. Prints one JSON object: bytes in, seconds until the upstream wrote its
//    last byte and until every sink had every byte, the proxy's CPU seconds
//    over that time (utime+stime from /proc/PID/stat) and its peak RSS.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench/stream_gen.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  fprintf(stderr, "bench_capacity: %s\n", what.c_str());
  exit(1);
}

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Options {
  int listen_port = 0;
  int proxy_port = 0;
  int proxy_pid = 0;
  std::string proxy_pid_file;  // read once the sinks are online (the proxy starts after this tool)
  std::string rdb;
  int sinks = 1;
  uint64_t bytes = 1ull << 30;
  std::string ready_file;
  double timeout = 120;
  bool copy = false;
  std::string tls_ca, tls_cert, tls_key;  // --tls: the sinks speak TLS
};

SSL_CTX* g_tls = nullptr;  // the sinks' client context with --tls

// utime + stime of a process, in seconds.
double process_cpu_seconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t rp = s.rfind(')');
  if (rp == std::string::npos) die("cannot read /proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(s.substr(rp + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // After the comm field: state(3) ... utime is field 14, stime 15.
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long process_status_kb(int pid, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) return std::strtol(line.c_str() + strlen(key) + 1, nullptr, 10);
  }
  return -1;
}

void set_timeouts(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void write_all(int fd, const char* p, size_t n, SSL* ssl = nullptr) {
  while (n > 0) {
    ssize_t w = ssl ? SSL_write(ssl, p, static_cast<int>(n)) : ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die(std::string("write: ") + strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}
void write_all(int fd, const std::string& s, SSL* ssl = nullptr) { write_all(fd, s.data(), s.size(), ssl); }

// A blocking reader with a buffer: lines and exact byte counts.
class Reader {
 public:
  explicit Reader(int fd, SSL* ssl = nullptr) : fd_(fd), ssl_(ssl) {}
  // A line without its CRLF / LF; false on EOF or timeout.
  bool line(std::string& out) {
    for (;;) {
      size_t nl = buf_.find('\n', pos_);
      if (nl != std::string::npos) {
        out.assign(buf_, pos_, nl - pos_);
        if (!out.empty() && out.back() == '\r') out.pop_back();
        pos_ = nl + 1;
        return true;
      }
      if (!fill()) return false;
    }
  }
  // Skips n bytes; false on EOF or timeout.
  bool skip(uint64_t n) {
    while (n > 0) {
      if (pos_ == buf_.size() && !fill()) return false;
      size_t take = static_cast<size_t>(std::min<uint64_t>(n, buf_.size() - pos_));
      pos_ += take;
      n -= take;
    }
    return true;
  }
  // Reads until at least n bytes are buffered past the last line / skip.
  bool need(size_t n) {
    while (buf_.size() - pos_ < n) {
      if (!fill()) return false;
    }
    return true;
  }
  // What was read past the last line / skip.
  size_t leftover() const { return buf_.size() - pos_; }
  std::string& raw() { return buf_; }
  size_t& pos() { return pos_; }

 private:
  bool fill() {
    if (pos_ > 0) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    char tmp[1 << 16];
    ssize_t n = ssl_ ? SSL_read(ssl_, tmp, sizeof tmp) : ::read(fd_, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) return fill();
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  SSL* ssl_;
  std::string buf_;
  size_t pos_ = 0;
};

int tcp_listen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0) {
    die("cannot listen on 127.0.0.1:" + std::to_string(port) + ": " + strerror(errno));
  }
  return fd;
}

int tcp_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Splits a request: multibulk (*N $len ...) or inline (space separated).
// Returns false when the buffer does not hold a whole request yet.
bool next_request(Reader& r, std::vector<std::string>& args) {
  args.clear();
  std::string line;
  if (!r.line(line)) return false;
  if (line.empty()) return true;
  if (line[0] == '*') {
    long n = std::strtol(line.c_str() + 1, nullptr, 10);
    for (long i = 0; i < n; ++i) {
      if (!r.line(line) || line.empty() || line[0] != '$') die("bad multibulk request from the proxy");
      long len = std::strtol(line.c_str() + 1, nullptr, 10);
      if (!r.need(static_cast<size_t>(len) + 2)) die("the proxy closed during its handshake");
      std::string arg(r.raw(), r.pos(), static_cast<size_t>(len));
      r.pos() += static_cast<size_t>(len) + 2;
      args.push_back(arg);
    }
    return true;
  }
  std::istringstream in(line);
  std::string w;
  while (in >> w) args.push_back(w);
  return true;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Plays the 2.6 master until SYNC, then sends the RDB. Returns the fd.
int serve_upstream_handshake(int listen_fd, const std::string& rdb, double timeout) {
  pollfd pfd{listen_fd, POLLIN, 0};
  int rc = ::poll(&pfd, 1, static_cast<int>(timeout * 1000));
  if (rc <= 0) die("the proxy did not connect to the scripted upstream");
  int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) die(std::string("accept: ") + strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_timeouts(fd, timeout);
  Reader r(fd);
  std::vector<std::string> args;
  for (;;) {
    if (!next_request(r, args)) die("the proxy closed the upstream link during its handshake");
    if (args.empty()) continue;
    std::string cmd = lower(args[0]);
    if (cmd == "sync") break;
    if (cmd == "ping") {
      write_all(fd, "+PONG\r\n");
    } else if (cmd == "auth") {
      write_all(fd, "+OK\r\n");
    } else if (cmd == "replconf") {
      if (args.size() >= 2 && lower(args[1]) == "listening-port") {
        write_all(fd, "+OK\r\n");
      } else {
        write_all(fd, "-ERR Unrecognized REPLCONF option: " + (args.size() >= 2 ? args[1] : "") + "\r\n");
      }
    } else {
      write_all(fd, "-ERR unknown command '" + args[0] + "'\r\n");
    }
  }
  if (r.leftover() != 0) die("the proxy sent bytes after SYNC");
  write_all(fd, "$" + std::to_string(rdb.size()) + "\r\n");
  write_all(fd, rdb);
  return fd;
}

struct Sink {
  int fd = -1;
  SSL* ssl = nullptr;
  uint64_t got = 0;
  bool done = false;
  double done_at = 0;
};

// A replica's handshake up to the end of the RDB. Returns false to retry
// (the proxy has no snapshot yet).
bool sink_handshake(Sink& s, int proxy_port, int index, double timeout) {
  s.fd = tcp_connect(proxy_port);
  if (s.fd < 0) return false;
  set_timeouts(s.fd, timeout);
  if (g_tls) {
    s.ssl = SSL_new(g_tls);
    SSL_set_fd(s.ssl, s.fd);
    if (SSL_connect(s.ssl) != 1) {
      char err[256];
      ERR_error_string_n(ERR_get_error(), err, sizeof err);
      die(std::string("sink: TLS handshake failed: ") + err);
    }
  }
  Reader r(s.fd, s.ssl);
  std::string line;
  write_all(s.fd, "*1\r\n$4\r\nPING\r\n", s.ssl);
  if (!r.line(line) || line.empty() || line[0] != '+') die("sink: PING got: " + line);
  std::string port = std::to_string(20000 + index);
  write_all(s.fd, "*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$" + std::to_string(port.size()) + "\r\n" +
                      port + "\r\n*3\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n",
            s.ssl);
  for (int i = 0; i < 2; ++i) {
    if (!r.line(line)) die("sink: no reply to REPLCONF");
  }
  write_all(s.fd, "*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n", s.ssl);
  do {
    if (!r.line(line)) die("sink: no reply to PSYNC");
  } while (line.empty());
  if (line.rfind("-NOMASTERLINK", 0) == 0 || line.rfind("-LOADING", 0) == 0) {
    if (s.ssl) SSL_free(s.ssl);
    s.ssl = nullptr;
    ::close(s.fd);
    s.fd = -1;
    return false;
  }
  if (line.rfind("+FULLRESYNC", 0) != 0) die("sink: PSYNC got: " + line);
  do {
    if (!r.line(line)) die("sink: no $len after +FULLRESYNC");
  } while (line.empty());
  if (line[0] != '$') die("sink: expected $len, got: " + line);
  uint64_t len = std::strtoull(line.c_str() + 1, nullptr, 10);
  if (!r.skip(len)) die("sink: the RDB transfer broke off");
  s.got = r.leftover();
  fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) | O_NONBLOCK);
  int big = 4 << 20;
  setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) die("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--listen") o.listen_port = std::stoi(val());
    else if (a == "--proxy-port") o.proxy_port = std::stoi(val());
    else if (a == "--proxy-pid") o.proxy_pid = std::stoi(val());
    else if (a == "--proxy-pid-file") o.proxy_pid_file = val();
    else if (a == "--rdb") o.rdb = val();
    else if (a == "--sinks") o.sinks = std::stoi(val());
    else if (a == "--bytes") o.bytes = std::stoull(val());
    else if (a == "--ready-file") o.ready_file = val();
    else if (a == "--timeout") o.timeout = std::stod(val());
    else if (a == "--copy") o.copy = true;
    else if (a == "--tls") {
      o.tls_ca = val();
      o.tls_cert = val();
      o.tls_key = val();
    }
    else die("unknown argument " + a);
  }
  if (!o.listen_port || !o.proxy_port || o.rdb.empty()) {
    die("usage: bench_capacity --listen PORT --proxy-port P --proxy-pid PID --rdb FILE --sinks N --bytes B");
  }
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout));
  if (!o.tls_ca.empty()) {
    g_tls = SSL_CTX_new(TLS_client_method());
    if (!g_tls || SSL_CTX_load_verify_locations(g_tls, o.tls_ca.c_str(), nullptr) != 1 ||
        SSL_CTX_use_certificate_file(g_tls, o.tls_cert.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(g_tls, o.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      die("--tls: cannot load the CA, certificate or key");
    }
    SSL_CTX_set_verify(g_tls, SSL_VERIFY_PEER, nullptr);
  }
  std::string rdb = read_file(o.rdb);

  // The prepared stream: whole commands, starting and ending in db 0, so it
  // can be replayed back to back.
  std::string stream;
  constexpr size_t kStreamBuffer = 64 << 20;
  stream.reserve(kStreamBuffer + 8192);
  psync::bench::StreamStats st = psync::bench::generate_stream(stream, kStreamBuffer, 0, true);
  uint64_t cycles = std::max<uint64_t>(1, (o.bytes + stream.size() - 1) / stream.size());
  uint64_t total_in = cycles * stream.size();
  uint64_t expected_out = cycles * st.out_bytes;

  int lfd = tcp_listen(o.listen_port);
  if (!o.ready_file.empty()) {
    std::ofstream(o.ready_file) << "ready\n";
  }
  int up = serve_upstream_handshake(lfd, rdb, o.timeout);
  ::close(lfd);

  std::vector<Sink> sinks(static_cast<size_t>(o.sinks));
  for (int i = 0; i < o.sinks; ++i) {
    while (!sink_handshake(sinks[static_cast<size_t>(i)], o.proxy_port, i, o.timeout)) {
      if (Clock::now() > deadline) die("the proxy did not offer a snapshot in time");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  if (!o.proxy_pid_file.empty()) {
    std::ifstream f(o.proxy_pid_file);
    if (!(f >> o.proxy_pid)) die("cannot read the proxy's pid from " + o.proxy_pid_file);
  }
  fcntl(up, F_SETFL, fcntl(up, F_GETFL) | O_NONBLOCK);
  int big = 4 << 20;
  setsockopt(up, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u64 = 0;
  epoll_ctl(ep, EPOLL_CTL_ADD, up, &ev);
  for (size_t i = 0; i < sinks.size(); ++i) {
    ev.events = EPOLLIN;
    ev.data.u64 = i + 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, sinks[i].fd, &ev);
  }

  std::vector<char> scratch(o.copy || g_tls ? (4 << 20) : 1);
  rusage ru0{};
  getrusage(RUSAGE_SELF, &ru0);
  double cpu0 = o.proxy_pid ? process_cpu_seconds(o.proxy_pid) : 0;
  auto t0 = Clock::now();
  uint64_t written = 0;
  double upstream_done_at = -1;
  size_t sinks_done = 0;
  std::vector<epoll_event> events(64);
  while (sinks_done < sinks.size()) {
    if (Clock::now() > deadline) {
      fprintf(stderr, "bench_capacity: timed out: upstream wrote %llu of %llu bytes; sinks got:",
              static_cast<unsigned long long>(written), static_cast<unsigned long long>(total_in));
      for (auto& s : sinks) fprintf(stderr, " %llu", static_cast<unsigned long long>(s.got));
      fprintf(stderr, " of %llu\n", static_cast<unsigned long long>(expected_out));
      return 1;
    }
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int k = 0; k < n; ++k) {
      uint64_t id = events[static_cast<size_t>(k)].data.u64;
      if (id == 0) {
        // Write until the socket is full or the stream is done.
        while (written < total_in) {
          size_t pos = static_cast<size_t>(written % stream.size());
          size_t want = std::min<size_t>(stream.size() - pos, 1 << 20);
          want = static_cast<size_t>(std::min<uint64_t>(want, total_in - written));
          ssize_t w = ::write(up, stream.data() + pos, want);
          if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            die(std::string("upstream write: ") + strerror(errno));
          }
          written += static_cast<uint64_t>(w);
        }
        if (written == total_in && upstream_done_at < 0) {
          upstream_done_at = since(t0);
          epoll_ctl(ep, EPOLL_CTL_DEL, up, nullptr);
        }
        continue;
      }
      Sink& s = sinks[id - 1];
      for (;;) {
        ssize_t r = 0;
        if (s.ssl) {
          // Every byte decrypted, as a TLS replica must.
          r = SSL_read(s.ssl, scratch.data(), static_cast<int>(scratch.size()));
          if (r <= 0) {
            const int e = SSL_get_error(s.ssl, static_cast<int>(r));
            if (e == SSL_ERROR_WANT_READ) break;
            die("sink TLS read failed (" + std::to_string(e) + ")");
          }
        } else {
          r = o.copy ? ::recv(s.fd, scratch.data(), scratch.size(), 0) : ::recv(s.fd, nullptr, 16 << 20, MSG_TRUNC);
        }
        if (r < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) break;
          die(std::string("sink read: ") + strerror(errno));
        }
        if (r == 0) die("the proxy closed a sink's connection");
        s.got += static_cast<uint64_t>(r);
      }
      if (!s.done && s.got >= expected_out) {
        s.done = true;
        s.done_at = since(t0);
        sinks_done++;
        epoll_ctl(ep, EPOLL_CTL_DEL, s.fd, nullptr);
      }
    }
  }
  double total_s = since(t0);
  double cpu1 = o.proxy_pid ? process_cpu_seconds(o.proxy_pid) : 0;
  rusage ru1{};
  getrusage(RUSAGE_SELF, &ru1);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  double self_cpu = tv(ru1.ru_utime) - tv(ru0.ru_utime) + tv(ru1.ru_stime) - tv(ru0.ru_stime);
  double proxy_cpu = cpu1 - cpu0;
  double gb_in = static_cast<double>(total_in) / 1e9;
  long hwm = o.proxy_pid ? process_status_kb(o.proxy_pid, "VmHWM:") : -1;
  long rss = o.proxy_pid ? process_status_kb(o.proxy_pid, "VmRSS:") : -1;
  printf(
      "{\"sinks\": %d, \"sink_reads\": \"%s\", \"bytes_in\": %llu, \"bytes_out_per_sink\": %llu, "
      "\"commands\": %llu, \"avg_command_bytes\": %.1f, "
      "\"seconds_upstream\": %.4f, \"seconds_total\": %.4f, \"gbps_upstream_side\": %.4f, "
      "\"gbps_in\": %.4f, \"gbps_out_total\": %.4f, \"proxy_cpu_seconds\": %.3f, "
      "\"proxy_cpu_s_per_gb\": %.4f, \"proxy_vmhwm_kb\": %ld, \"proxy_vmrss_kb\": %ld, "
      "\"tool_cpu_seconds\": %.3f}\n",
      o.sinks, g_tls ? "tls" : o.copy ? "copy" : "msg_trunc", static_cast<unsigned long long>(total_in),
      static_cast<unsigned long long>(expected_out),
      static_cast<unsigned long long>(cycles * (st.commands + st.selects)),
      static_cast<double>(stream.size()) / static_cast<double>(st.commands + st.selects), upstream_done_at,
      total_s, gb_in / upstream_done_at, gb_in / total_s,
      static_cast<double>(expected_out) * static_cast<double>(o.sinks) / 1e9 / total_s, proxy_cpu,
      proxy_cpu / gb_in, hwm, rss, self_cpu);
  return 0;
}
