// The last 15 minutes, for the status page's plots (GET /history): once a
// second, the bytes received from the upstream so far and each replica's lag.
// Pure and bounded: kSamples samples, each with at most kMaxReplicas
// replicas (the first ones in accept order), whatever happens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace psync::proxy {

class History {
 public:
  static constexpr size_t kSamples = 900;      // 15 min at one a second
  static constexpr size_t kMaxReplicas = 16;   // replicas plotted

  struct ReplicaLag {
    std::string name;        // "ip:listening port", as /status and /metrics name it
    uint64_t lag_bytes = 0;
    double lag_seconds = -1;  // < 0: unknown (no ACK yet)
  };

  // A sample at unix_ms; ingest_total: upstream bytes received since the
  // process started (monotonic). Replicas past kMaxReplicas are left out.
  void add(int64_t unix_ms, uint64_t ingest_total, std::vector<ReplicaLag> replicas);
  size_t size() const { return samples_.size(); }

  // {"period_seconds": 1, "window_seconds": 900, "max_replicas": 16,
  //  "samples": [{"t": <unix s>, "ingest_bytes_per_second": <x or null for the first>,
  //               "replicas": {"<name>": [<lag bytes>, <lag seconds or null>], ...}}, ...]}
  // Names come from peers (their IP and announced port): escaped by the JSON
  // dump, never interpreted.
  std::string json() const;

 private:
  struct Sample {
    int64_t unix_ms = 0;
    uint64_t ingest_total = 0;
    std::vector<ReplicaLag> replicas;
  };
  std::deque<Sample> samples_;
};

}  // namespace psync::proxy
