// Keyspace snapshots of a Redis server and their comparison.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

namespace psync::test {

class RedisServer;

struct KeyEntry {
    std::string type;           // "string", "hash", "list", "set", "zset", "stream", ...
    std::string value;          // canonical, unambiguous rendering of the content
    bool has_ttl = false;
    int64_t expire_at_ms = 0;   // unix ms, when has_ttl (measured as now + PTTL)

    bool operator==(const KeyEntry&) const = default;
};

// (db, key) -> entry, for every db 0..15.
using Keyspace = std::map<std::pair<int, std::string>, KeyEntry>;

// Reads every key of every db 0..15 of the server at 127.0.0.1:port (SCAN, then type,
// content and PTTL): strings by value, hash fields sorted, list elements in order,
// set members sorted, zset members with scores in rank order.
Keyspace read_keyspace(int port);

// How an entry renders one string (a value, a member, a field): in double quotes,
// printable ASCII as is with '"' and '\\' escaped by a backslash, every other byte as \xHH.
std::string quote_value(const std::string& s);

// Number of keys per db, e.g. "db0=120 db1=80".
std::string keyspace_summary(const Keyspace& ks);

// "" if equal; else a readable description of the first `max_items` differences.
// TTL presence must match exactly; expire times may differ by up to ttl_tolerance_ms.
std::string diff_keyspaces(const Keyspace& expected, const Keyspace& actual,
                           const std::string& expected_name, const std::string& actual_name,
                           size_t max_items = 8, int64_t ttl_tolerance_ms = 5000);

// Polls until `other`'s keyspace equals `reference`'s; FAILs with the diff after timeout_s.
// Returns the seconds waited.
double wait_keyspace_equal(const RedisServer& reference, const RedisServer& other, double timeout_s = 30);

}  // namespace psync::test
