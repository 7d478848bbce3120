// The status page's history: one sample a second, at most 15 minutes and 16 replicas, the
// ingest rate from consecutive totals.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "proxy/history.h"

using psync::proxy::History;
using nlohmann::json;

TEST_CASE("history: bounded in samples and replicas, rates from consecutive totals, names escaped") {
  History h;
  CHECK(json::parse(h.json())["samples"].empty());
  std::vector<History::ReplicaLag> many;
  for (int i = 0; i < 40; ++i) many.push_back({"10.0.0." + std::to_string(i) + ":6379", static_cast<uint64_t>(i), 0.5});
  for (int i = 0; i < 2000; ++i) h.add(1'000'000 + i * 1000, static_cast<uint64_t>(i) * 2048, many);
  CHECK(h.size() == History::kSamples);
  const json j = json::parse(h.json());
  REQUIRE(j["samples"].size() == History::kSamples);
  CHECK(j["samples"][0]["ingest_bytes_per_second"].is_null());  // nothing before the first one kept
  CHECK(j["samples"][1]["ingest_bytes_per_second"].get<double>() == doctest::Approx(2048));
  CHECK(j["samples"].back()["replicas"].size() == History::kMaxReplicas);
  CHECK(j["samples"].back()["t"].get<double>() == doctest::Approx(1000.0 + 1999));
  // A total that went down (a new upstream link): no rate, not a negative one.
  History r;
  r.add(0, 5000, {});
  r.add(1000, 10, {{"a:1", 7, -1}});
  const json k = json::parse(r.json());
  CHECK(k["samples"][1]["ingest_bytes_per_second"].is_null());
  CHECK(k["samples"][1]["replicas"]["a:1"][0] == 7);
  CHECK(k["samples"][1]["replicas"]["a:1"][1].is_null());  // no ACK yet
  // Bytes that are not UTF-8 in a name do not break the JSON.
  History bad;
  bad.add(0, 0, {{std::string("\xff\"<x>", 5), 1, 1}});
  CHECK_NOTHROW(json::parse(bad.json()));
}
