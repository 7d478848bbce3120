#include "proxy/history.h"

#include <nlohmann/json.hpp>

namespace psync::proxy {

void History::add(int64_t unix_ms, uint64_t ingest_total, std::vector<ReplicaLag> replicas) {
  if (replicas.size() > kMaxReplicas) replicas.resize(kMaxReplicas);
  samples_.push_back(Sample{unix_ms, ingest_total, std::move(replicas)});
  while (samples_.size() > kSamples) samples_.pop_front();
}

std::string History::json() const {
  using nlohmann::json;
  json samples = json::array();
  const Sample* prev = nullptr;
  for (const Sample& s : samples_) {
    json replicas = json::object();
    for (const ReplicaLag& r : s.replicas) {
      replicas[r.name] = json::array({r.lag_bytes, r.lag_seconds < 0 ? json(nullptr) : json(r.lag_seconds)});
    }
    json rate = nullptr;
    if (prev && s.unix_ms > prev->unix_ms && s.ingest_total >= prev->ingest_total) {
      rate = static_cast<double>(s.ingest_total - prev->ingest_total) * 1000.0 /
             static_cast<double>(s.unix_ms - prev->unix_ms);
    }
    samples.push_back({{"t", static_cast<double>(s.unix_ms) / 1000.0}, {"ingest_bytes_per_second", rate},
                       {"replicas", std::move(replicas)}});
    prev = &s;
  }
  json j = {{"period_seconds", 1},
            {"window_seconds", kSamples},
            {"max_replicas", kMaxReplicas},
            {"samples", std::move(samples)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace psync::proxy
