// Scenario 6: the stream normalizer (protocol::LegacyStream) against memcpy
// of the same bytes, the physical limit of anything that touches every byte.
// normalizer/* and memcpy/* measure each alone; paired/* measures both pass
// for pass in one benchmark and gives the ratio the table uses.
//
// Both walk the same stream in the same chunks (the proxy reads up to 256 KB
// from the upstream socket; what a read returns is usually 16-64 KB). memcpy
// copies each chunk into a buffer of the chunk's size; the normalizer feeds
// each chunk to a sink that only counts what it is given (in the proxy the
// sink appends to the log, a cost of its own that is not the parser's).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <ctime>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/stream_gen.h"
#include "protocol/legacy_stream.h"

namespace {

using psync::bench::generate_stream;

constexpr size_t kStreamBytes = 64 << 20;

struct Stream {
  std::string bytes;
  psync::bench::StreamStats stats;
};

// name -> (value size, inline select)
const Stream& stream(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Stream>> cache;
  auto& s = cache[name];
  if (!s) {
    s = std::make_unique<Stream>();
    s->bytes.reserve(kStreamBytes + 8192);
    if (name == "realistic") {
      s->stats = generate_stream(s->bytes, kStreamBytes, 0, true);
    } else if (name == "realistic-multibulk-select") {
      s->stats = generate_stream(s->bytes, kStreamBytes, 0, false);
    } else if (name == "set-3B") {
      s->stats = generate_stream(s->bytes, kStreamBytes, 3, true);
    } else if (name == "set-30B") {
      s->stats = generate_stream(s->bytes, kStreamBytes, 30, true);
    } else if (name == "set-300B") {
      s->stats = generate_stream(s->bytes, kStreamBytes, 300, true);
    }
  }
  return *s;
}

class CountingSink : public psync::protocol::StreamSink {
 public:
  void on_stream(std::string_view bytes, bool at_boundary, uint64_t /*upstream_end*/) override {
    bytes_ += bytes.size();
    boundaries_ += at_boundary;
  }
  void on_upstream_ping(uint64_t /*upstream_end*/) override { pings_++; }
  uint64_t bytes_ = 0;
  uint64_t boundaries_ = 0;
  uint64_t pings_ = 0;
};

void normalizer(benchmark::State& state, std::string name) {
  const Stream& s = stream(name);
  const auto chunk = static_cast<size_t>(state.range(0));
  psync::protocol::LegacyStream parser;
  CountingSink sink;
  for (auto _ : state) {
    std::string_view all(s.bytes);
    for (size_t pos = 0; pos < all.size(); pos += chunk) {
      if (!parser.feed(all.substr(pos, chunk), sink)) {
        state.SkipWithError(parser.error().c_str());
        return;
      }
    }
    benchmark::DoNotOptimize(sink.bytes_);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * s.bytes.size()));
  state.counters["commands_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * (s.stats.commands + s.stats.selects)),
      benchmark::Counter::kIsRate);
  state.counters["avg_command_bytes"] =
      static_cast<double>(s.bytes.size()) / static_cast<double>(s.stats.commands + s.stats.selects);
  if (sink.bytes_ != state.iterations() * s.stats.out_bytes) {
    state.SkipWithError("the normalizer did not deliver the expected bytes");
  }
}

void copy(benchmark::State& state, std::string name) {
  const Stream& s = stream(name);
  const auto chunk = static_cast<size_t>(state.range(0));
  std::vector<char> dst(chunk);
  for (auto _ : state) {
    const char* src = s.bytes.data();
    size_t total = s.bytes.size();
    for (size_t pos = 0; pos < total; pos += chunk) {
      size_t n = std::min(chunk, total - pos);
      std::memcpy(dst.data(), src + pos, n);
      benchmark::ClobberMemory();
    }
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * s.bytes.size()));
}

// Both in one benchmark, pass for pass: each iteration times one memcpy pass
// and one normalizer pass over the whole stream (in alternating order), so
// that both see the same machine; the ratio is of the median pass times.
// This is the figure the table uses: memcpy moves with the memory bandwidth
// the rest of the machine leaves, and separate benchmarks seconds apart can
// see very different machines.
void paired(benchmark::State& state, std::string name) {
  const Stream& s = stream(name);
  const auto chunk = static_cast<size_t>(state.range(0));
  psync::protocol::LegacyStream parser;
  CountingSink sink;
  std::vector<char> dst(chunk);
  std::vector<double> t_memcpy, t_norm;
  // Thread CPU time: a pass the scheduler interrupts is not charged for it.
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  auto copy_pass = [&] {
    const char* src = s.bytes.data();
    size_t total = s.bytes.size();
    for (size_t pos = 0; pos < total; pos += chunk) {
      std::memcpy(dst.data(), src + pos, std::min(chunk, total - pos));
      benchmark::ClobberMemory();
    }
  };
  auto parse_pass = [&] {
    std::string_view all(s.bytes);
    for (size_t pos = 0; pos < all.size(); pos += chunk) parser.feed(all.substr(pos, chunk), sink);
    benchmark::DoNotOptimize(sink.bytes_);
  };
  bool copy_first = true;
  for (auto _ : state) {
    double t0 = cpu_now();
    if (copy_first) copy_pass(); else parse_pass();
    double t1 = cpu_now();
    if (copy_first) parse_pass(); else copy_pass();
    double t2 = cpu_now();
    double a = t1 - t0;
    double b = t2 - t1;
    t_memcpy.push_back(copy_first ? a : b);
    t_norm.push_back(copy_first ? b : a);
    copy_first = !copy_first;
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  double bytes = static_cast<double>(s.bytes.size());
  double m = median(t_memcpy), n = median(t_norm);
  state.counters["memcpy_Bps"] = m > 0 ? bytes / m : 0;
  state.counters["normalizer_Bps"] = n > 0 ? bytes / n : 0;
  state.counters["ratio"] = n > 0 ? m / n : 0;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 2 * s.bytes.size()));
  if (parser.error().size() || sink.bytes_ != state.iterations() * s.stats.out_bytes) {
    state.SkipWithError("the normalizer did not deliver the expected bytes");
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  for (const char* name : {"realistic", "realistic-multibulk-select", "set-3B", "set-30B", "set-300B"}) {
    for (int64_t chunk : {16 << 10, 64 << 10}) {
      benchmark::RegisterBenchmark(("paired/" + std::string(name)).c_str(), paired, name)
          ->Arg(chunk)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("normalizer/" + std::string(name)).c_str(), normalizer, name)
          ->Arg(chunk)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("memcpy/" + std::string(name)).c_str(), copy, name)
          ->Arg(chunk)
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
