// The benchmarks' Redis driver (hiredis), one subcommand per job:
//
//   catchup   --master M --replicas P1,P2 --t0-ns NS [--timeout S]
//       Scenario 1. Writes a sentinel key to the master, polls every replica
//       every millisecond until it holds it, then compares DEBUG DIGEST of
//       every replica with the master's. Seconds are counted from t0
//       (CLOCK_REALTIME, ns: the writers' end, taken by the caller).
//   writer    --port M [--rate N] [--duration S]
//       Steady writes: N commands a second in batches every 10 ms, the first
//       of each batch SET bench:ts <unix ms>. Until --duration or SIGTERM.
//   storm     --master M --replicas P1,... [--kills 5] [--rate N] [--csv F]
//             [--warmup S] [--settle S] [--timeout S]
//       Scenario 3. A writer (as above), a sampler of each replica's lag
//       (unix ms now minus the bench:ts it holds, every 100 ms; a replica that
//       does not answer or is loading keeps the lag of its last value) and
//       the storm: --kills rounds of CLIENT KILL TYPE master on every
//       replica at once, each round waiting until all are in sync again.
//   wait-synced --ports P1,... [--timeout S]
//       Until every replica's link is up, not syncing and not loading.
//   replicaof --replica R --master-port P [--timeout S]
//       Scenario 5. REPLICAOF 127.0.0.1 P, then polls until the replica is
//       fully loaded and its link is up; prints the seconds.
//
// Every subcommand prints one JSON object on stdout, is bounded by its
// --timeout and exits non-zero when it runs out.
#include <hiredis/hiredis.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  fprintf(stderr, "bench_probe: %s\n", what.c_str());
  exit(1);
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void sleep_ms(double ms) { std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(ms * 1000))); }

std::atomic<bool> g_stop{false};

struct Args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  double num(const std::string& k, double def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::stod(it->second);
  }
  std::vector<int> ports(const std::string& k) const {
    std::vector<int> out;
    std::stringstream ss(get(k));
    std::string p;
    while (std::getline(ss, p, ',')) {
      if (!p.empty()) out.push_back(std::stoi(p));
    }
    return out;
  }
};

// A connection that reconnects on demand; every call bounded by a timeout.
class Conn {
 public:
  Conn(int port, double timeout_s) : port_(port), timeout_s_(timeout_s) {}
  ~Conn() { drop(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  int port() const { return port_; }

  bool ensure() {
    if (c_) return true;
    timeval tv = to_tv(timeout_s_);
    c_ = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (!c_ || c_->err) {
      drop();
      return false;
    }
    redisSetTimeout(c_, tv);
    return true;
  }
  void drop() {
    if (c_) redisFree(c_);
    c_ = nullptr;
  }
  // Runs a command; the reply (owned by the caller) or nullptr on a
  // connection error (the connection is dropped, to be remade).
  redisReply* cmd(const std::vector<std::string>& argv) {
    if (!ensure()) return nullptr;
    std::vector<const char*> a;
    std::vector<size_t> l;
    for (const auto& s : argv) {
      a.push_back(s.data());
      l.push_back(s.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(c_, static_cast<int>(a.size()), a.data(), l.data()));
    if (!r) drop();
    return r;
  }
  // The reply as a string ("" for nil, "-ERR..." for errors); false on a
  // connection error.
  bool str(const std::vector<std::string>& argv, std::string& out) {
    redisReply* r = cmd(argv);
    if (!r) return false;
    switch (r->type) {
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
        out.assign(r->str, r->len);
        break;
      case REDIS_REPLY_ERROR:
        out = "-" + std::string(r->str, r->len);
        break;
      case REDIS_REPLY_INTEGER:
        out = std::to_string(r->integer);
        break;
      default:
        out.clear();
    }
    freeReplyObject(r);
    return true;
  }
  // A pipeline: every command appended, then every reply read.
  bool pipeline(const std::vector<std::vector<std::string>>& cmds) {
    if (!ensure()) return false;
    for (const auto& argv : cmds) {
      std::vector<const char*> a;
      std::vector<size_t> l;
      for (const auto& s : argv) {
        a.push_back(s.data());
        l.push_back(s.size());
      }
      redisAppendCommandArgv(c_, static_cast<int>(a.size()), a.data(), l.data());
    }
    for (size_t i = 0; i < cmds.size(); ++i) {
      void* r = nullptr;
      if (redisGetReply(c_, &r) != REDIS_OK || !r) {
        drop();
        return false;
      }
      freeReplyObject(r);
    }
    return true;
  }

 private:
  static timeval to_tv(double s) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(s);
    tv.tv_usec = static_cast<suseconds_t>((s - static_cast<double>(tv.tv_sec)) * 1e6);
    return tv;
  }
  int port_;
  double timeout_s_;
  redisContext* c_ = nullptr;
};

// "field:value" of an INFO reply.
std::string info_field(const std::string& info, const std::string& field) {
  std::string key = "\n" + field + ":";
  size_t p = ("\n" + info).find(key);
  if (p == std::string::npos) return "";
  size_t start = p + key.size() - 1;  // -1: the "\n" prepended above
  size_t end = info.find_first_of("\r\n", start);
  return info.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// Link up, not syncing, not loading.
bool replica_in_sync(Conn& c) {
  std::string info;
  if (!c.str({"INFO", "all"}, info) || info.empty() || info[0] == '-') return false;
  return info_field(info, "master_link_status") == "up" && info_field(info, "master_sync_in_progress") == "0" &&
         info_field(info, "loading") == "0";
}

std::string ports_json(const std::vector<int>& ports, const std::vector<double>& vals) {
  std::string out = "{";
  for (size_t i = 0; i < ports.size(); ++i) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s\"%d\": %.4f", i ? ", " : "", ports[i], vals[i]);
    out += buf;
  }
  return out + "}";
}

// ------------------------------------------------------------------ catchup

int cmd_catchup(const Args& a) {
  int master_port = static_cast<int>(a.num("--master", 0));
  std::vector<int> ports = a.ports("--replicas");
  int64_t t0 = static_cast<int64_t>(a.num("--t0-ns", static_cast<double>(unix_ns())));
  double timeout = a.num("--timeout", 300);
  auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  Conn master(master_port, 60);
  std::string token = std::to_string(unix_ns()) + "-" + std::to_string(getpid());
  std::string reply;
  if (!master.str({"SET", "bench:sentinel", token}, reply) || reply != "OK") die("cannot write the sentinel");
  int64_t sentinel_ns = unix_ns();

  std::vector<std::unique_ptr<Conn>> conns;
  for (int p : ports) conns.push_back(std::make_unique<Conn>(p, 1));
  std::vector<double> seconds(ports.size(), -1);
  size_t left = ports.size();
  while (left > 0) {
    if (Clock::now() > deadline) die("timed out waiting for the replicas to receive the sentinel");
    for (size_t i = 0; i < ports.size(); ++i) {
      if (seconds[i] >= 0) continue;
      std::string v;
      if (conns[i]->str({"GET", "bench:sentinel"}, v) && v == token) {
        seconds[i] = static_cast<double>(unix_ns() - t0) / 1e9;
        left--;
      }
    }
    if (left > 0) sleep_ms(1);
  }
  // Equal digests: equal datasets (every db, every key, value and TTL).
  std::string want;
  if (!master.str({"DEBUG", "DIGEST"}, want)) die("DEBUG DIGEST failed on the master");
  bool ok = !want.empty() && want[0] != '-';
  std::string digests = "{";
  for (size_t i = 0; i < ports.size(); ++i) {
    std::string d;
    Conn slow(ports[i], 60);  // a digest walks the whole dataset
    if (!slow.str({"DEBUG", "DIGEST"}, d)) d = "(no answer)";
    ok = ok && d == want;
    digests += (i ? ", \"" : "\"") + std::to_string(ports[i]) + "\": \"" + d + "\"";
  }
  digests += "}";
  printf("{\"seconds\": %s, \"sentinel_written_after_s\": %.4f, \"master_digest\": \"%s\", \"digests\": %s, "
         "\"digest_ok\": %s}\n",
         ports_json(ports, seconds).c_str(), static_cast<double>(sentinel_ns - t0) / 1e9, want.c_str(),
         digests.c_str(), ok ? "true" : "false");
  return ok ? 0 : 3;
}

// ------------------------------------------------------------------- writer

struct WriterStats {
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> errors{0};
};

// Steady writes until g_stop or the deadline.
void run_writer(int port, double rate, double duration_s, WriterStats& stats) {
  Conn c(port, 2);
  std::mt19937_64 rng(12345);
  std::string value(100, 'v');
  const double period_ms = 10;
  auto per_batch = static_cast<size_t>(std::max(1.0, rate * period_ms / 1000.0));
  auto start = Clock::now();
  auto next = start;
  while (!g_stop.load()) {
    if (duration_s > 0 && std::chrono::duration<double>(Clock::now() - start).count() >= duration_s) break;
    std::vector<std::vector<std::string>> batch;
    batch.push_back({"SET", "bench:ts", std::to_string(unix_ms())});
    for (size_t i = 1; i < per_batch; ++i) {
      uint64_t r = rng();
      // Keys built with += (GCC 12 warns falsely on "literal" + std::string).
      std::string key = (r % 3 == 0) ? "w:key:" : (r % 3 == 1) ? "w:ctr:" : "w:hash:";
      key += std::to_string(r % ((r % 3 == 0) ? 100000 : (r % 3 == 1) ? 1000 : 10000));
      switch (r % 3) {
        case 0: batch.push_back({"SET", key, value}); break;
        case 1: batch.push_back({"INCR", key}); break;
        default: {
          std::string field = "f";
          field += std::to_string(r % 10);
          batch.push_back({"HSET", key, field, value});
        }
      }
    }
    if (c.pipeline(batch)) {
      stats.commands += batch.size();
    } else {
      stats.errors++;
    }
    next += std::chrono::microseconds(static_cast<int64_t>(period_ms * 1000));
    auto now = Clock::now();
    if (next > now) {
      std::this_thread::sleep_until(next);
    } else if (now - next > std::chrono::seconds(1)) {
      next = now;  // fell far behind (master busy): do not burst to catch up
    }
  }
}

void on_signal(int) { g_stop = true; }

int cmd_writer(const Args& a) {
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  WriterStats st;
  run_writer(static_cast<int>(a.num("--port", 0)), a.num("--rate", 2000), a.num("--duration", 0), st);
  printf("{\"commands\": %llu, \"errors\": %llu}\n", static_cast<unsigned long long>(st.commands.load()),
         static_cast<unsigned long long>(st.errors.load()));
  return 0;
}

// -------------------------------------------------------------- wait-synced

bool wait_synced(const std::vector<int>& ports, double timeout_s) {
  auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  std::vector<std::unique_ptr<Conn>> conns;
  for (int p : ports) conns.push_back(std::make_unique<Conn>(p, 2));
  std::vector<bool> ok(ports.size(), false);
  size_t left = ports.size();
  while (left > 0) {
    if (Clock::now() > deadline) return false;
    for (size_t i = 0; i < ports.size(); ++i) {
      if (!ok[i] && replica_in_sync(*conns[i])) {
        ok[i] = true;
        left--;
      }
    }
    if (left > 0) sleep_ms(20);
  }
  return true;
}

int cmd_wait_synced(const Args& a) {
  auto t0 = Clock::now();
  bool ok = wait_synced(a.ports("--ports"), a.num("--timeout", 300));
  printf("{\"synced\": %s, \"seconds\": %.3f}\n", ok ? "true" : "false",
         std::chrono::duration<double>(Clock::now() - t0).count());
  return ok ? 0 : 1;
}

// ---------------------------------------------------------------- replicaof

int cmd_replicaof(const Args& a) {
  int replica = static_cast<int>(a.num("--replica", 0));
  int master = static_cast<int>(a.num("--master-port", 0));
  double timeout = a.num("--timeout", 300);
  Conn c(replica, 5);
  std::string reply;
  auto t0 = Clock::now();
  if (!c.str({"REPLICAOF", "127.0.0.1", std::to_string(master)}, reply) || reply.rfind("OK", 0) != 0) {
    die("REPLICAOF failed: " + reply);
  }
  auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  // The link is down right after REPLICAOF; wait for a completed sync.
  while (!replica_in_sync(c)) {
    if (Clock::now() > deadline) die("timed out waiting for the replica to load");
    sleep_ms(10);
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::string keys;
  c.str({"DBSIZE"}, keys);
  printf("{\"seconds\": %.4f, \"dbsize\": %s}\n", s, keys.empty() ? "null" : keys.c_str());
  return 0;
}

// -------------------------------------------------------------------- storm

int cmd_storm(const Args& a) {
  int master_port = static_cast<int>(a.num("--master", 0));
  std::vector<int> ports = a.ports("--replicas");
  int kills = static_cast<int>(a.num("--kills", 5));
  double rate = a.num("--rate", 2000);
  double warmup = a.num("--warmup", 2);
  double settle = a.num("--settle", 1);
  double timeout = a.num("--timeout", 300);
  std::string csv_path = a.get("--csv");
  auto start = Clock::now();
  auto deadline = start + std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  int64_t start_ms = unix_ms();

  WriterStats wst;
  std::thread writer([&] { run_writer(master_port, rate, 0, wst); });

  // The samplers: the lag of each replica every 100 ms, one thread per
  // replica (a replica busy loading must not delay the others' samples).
  std::atomic<bool> sampling{true};
  const auto tick = std::chrono::milliseconds(100);
  const auto first_tick = Clock::now();
  std::vector<std::vector<double>> lags(ports.size());  // [replica][tick] seconds
  std::vector<std::thread> samplers;
  for (size_t i = 0; i < ports.size(); ++i) {
    samplers.emplace_back([&, i] {
      Conn c(ports[i], 0.08);
      int64_t last_ts = start_ms;
      auto next = first_tick;
      while (sampling.load()) {
        std::string v;
        if (c.str({"GET", "bench:ts"}, v) && !v.empty() && v[0] != '-') {
          int64_t ts = std::strtoll(v.c_str(), nullptr, 10);
          if (ts > 0) last_ts = ts;
        }
        lags[i].push_back(static_cast<double>(std::max<int64_t>(0, unix_ms() - last_ts)) / 1000.0);
        next += tick;
        auto now = Clock::now();
        while (next < now) {  // a sample that took too long: the ticks it covered, with no news
          lags[i].push_back(lags[i].back() + 0.1);
          next += tick;
        }
        std::this_thread::sleep_until(next);
      }
    });
  }
  const double first_tick_s = static_cast<double>(unix_ms() - start_ms) / 1000.0;

  bool ok = true;
  std::string failure;
  std::vector<double> kill_at, round_seconds;
  int64_t links_killed = 0;  // what CLIENT KILL reported
  if (!wait_synced(ports, timeout)) {
    ok = false;
    failure = "replicas not in sync before the storm";
  }
  sleep_ms(warmup * 1000);
  std::vector<std::unique_ptr<Conn>> ctl;
  for (int p : ports) ctl.push_back(std::make_unique<Conn>(p, 5));
  for (int round = 0; ok && round < kills; ++round) {
    auto t = Clock::now();
    kill_at.push_back(static_cast<double>(unix_ms() - start_ms) / 1000.0);
    for (auto& c : ctl) {
      std::string r;
      if (c->str({"CLIENT", "KILL", "TYPE", "master"}, r)) links_killed += std::strtoll(r.c_str(), nullptr, 10);
    }
    sleep_ms(300);  // the kill takes effect; the replica reconnects within a second
    double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left <= 0 || !wait_synced(ports, left)) {
      ok = false;
      failure = "replicas not back in sync after kill round " + std::to_string(round + 1);
      break;
    }
    round_seconds.push_back(std::chrono::duration<double>(Clock::now() - t).count());
    sleep_ms(settle * 1000);
  }
  sleep_ms(settle * 1000);
  sampling = false;
  for (auto& t : samplers) t.join();
  g_stop = true;
  writer.join();

  // The lag series: per tick, the max and the mean over the replicas.
  size_t ticks = SIZE_MAX;
  for (const auto& l : lags) ticks = std::min(ticks, l.size());
  if (ports.empty()) ticks = 0;
  double max_lag = 0, sum_lag = 0;
  if (!csv_path.empty()) {
    std::ofstream f(csv_path);
    f << "# seconds max_lag mean_lag";
    for (int p : ports) f << " r" << p;
    f << "\n";
    for (size_t k = 0; k < ticks; ++k) {
      double mx = 0, sum = 0;
      for (const auto& l : lags) {
        mx = std::max(mx, l[k]);
        sum += l[k];
      }
      double mean = sum / static_cast<double>(lags.size());
      f << first_tick_s + 0.1 * static_cast<double>(k) << " " << mx << " " << mean;
      for (const auto& l : lags) f << " " << l[k];
      f << "\n";
      max_lag = std::max(max_lag, mx);
      sum_lag += mean;
    }
    std::ofstream kf(csv_path + ".kills");
    for (double t : kill_at) kf << t << "\n";
  }
  size_t n_lag = ticks;
  std::string kills_json = "[", rounds_json = "[";
  for (size_t i = 0; i < kill_at.size(); ++i) kills_json += (i ? ", " : "") + std::to_string(kill_at[i]);
  for (size_t i = 0; i < round_seconds.size(); ++i) {
    rounds_json += (i ? ", " : "") + std::to_string(round_seconds[i]);
  }
  printf("{\"ok\": %s, \"failure\": \"%s\", \"links_killed\": %lld, \"kill_at_s\": %s], \"round_seconds\": %s], "
         "\"max_lag_s\": %.3f, \"mean_lag_s\": %.3f, \"writes\": %llu, \"write_errors\": %llu, "
         "\"seconds\": %.2f}\n",
         ok ? "true" : "false", failure.c_str(), static_cast<long long>(links_killed), kills_json.c_str(), rounds_json.c_str(), max_lag,
         n_lag ? sum_lag / static_cast<double>(n_lag) : 0.0, static_cast<unsigned long long>(wst.commands.load()),
         static_cast<unsigned long long>(wst.errors.load()),
         std::chrono::duration<double>(Clock::now() - start).count());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: bench_probe catchup|writer|storm|wait-synced|replicaof --options");
  signal(SIGPIPE, SIG_IGN);
  std::string sub = argv[1];
  Args a;
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) die("bad argument " + k);
    a.kv[k] = argv[++i];
  }
  if (sub == "catchup") return cmd_catchup(a);
  if (sub == "writer") return cmd_writer(a);
  if (sub == "storm") return cmd_storm(a);
  if (sub == "wait-synced") return cmd_wait_synced(a);
  if (sub == "replicaof") return cmd_replicaof(a);
  die("unknown subcommand " + sub);
}
