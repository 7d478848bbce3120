#include "tests/support/keyspace.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <vector>

#include "tests/support/redis_client.h"
#include "tests/support/redis_server.h"
#include "tests/support/test_context.h"

namespace psync::test {
namespace {


std::string render_list(const std::vector<std::string>& items, char open, char close) {
    std::string out(1, open);
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        out += items[i];
    }
    out += close;
    return out;
}

std::vector<std::string> strings_of(const Reply& r) {
    std::vector<std::string> out;
    for (const auto& e : r.elements) out.push_back(e.str);
    return out;
}

// Renders the content reply of a key of the given type.
std::string render_value(const std::string& type, const Reply& r) {
    if (r.is_error()) return "(error " + r.str + ")";
    if (r.is_nil()) return "(nil)";
    if (type == "string") return quote_value(r.str);
    if (type == "list") {
        std::vector<std::string> items;
        for (const auto& s : strings_of(r)) items.push_back(quote_value(s));
        return render_list(items, '[', ']');
    }
    if (type == "set") {
        std::vector<std::string> members = strings_of(r);
        std::sort(members.begin(), members.end());
        for (auto& m : members) m = quote_value(m);
        return render_list(members, '{', '}');
    }
    if (type == "hash" || type == "zset") {
        std::vector<std::string> flat = strings_of(r);
        std::vector<std::string> pairs;
        for (size_t i = 0; i + 1 < flat.size(); i += 2) pairs.push_back(quote_value(flat[i]) + ": " + quote_value(flat[i + 1]));
        if (type == "hash") std::sort(pairs.begin(), pairs.end());
        return render_list(pairs, '{', '}');
    }
    return r.describe();  // streams and anything else: the raw reply
}

Command content_command(const std::string& type, const std::string& key) {
    if (type == "string") return {"GET", key};
    if (type == "hash") return {"HGETALL", key};
    if (type == "list") return {"LRANGE", key, "0", "-1"};
    if (type == "set") return {"SMEMBERS", key};
    if (type == "zset") return {"ZRANGE", key, "0", "-1", "WITHSCORES"};
    if (type == "stream") return {"XRANGE", key, "-", "+"};
    return {"TYPE", key};
}

std::string truncated(const std::string& s, size_t n = 300) {
    return s.size() <= n ? s : s.substr(0, n) + "... (" + std::to_string(s.size()) + " chars)";
}

std::string describe_entry(const KeyEntry& e) {
    std::string out = e.type + " " + truncated(e.value);
    if (e.has_ttl) out += " (ttl " + std::to_string((e.expire_at_ms - unix_time_ms()) / 1000) + " s)";
    else out += " (no ttl)";
    return out;
}

}  // namespace

std::string quote_value(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out + "\"";
}

Keyspace read_keyspace(int port) {
    RedisClient c = RedisClient::connect(port);
    Keyspace ks;
    constexpr size_t kBatch = 200;
    for (int db = 0; db < 16; ++db) {
        c.must({"SELECT", std::to_string(db)});
        std::set<std::string> key_set;
        std::string cursor = "0";
        do {
            Reply r = c.must({"SCAN", cursor, "COUNT", "1000"});
            cursor = r.elements.at(0).str;
            for (const auto& k : r.elements.at(1).elements) key_set.insert(k.str);
        } while (cursor != "0");
        std::vector<std::string> keys(key_set.begin(), key_set.end());

        for (size_t start = 0; start < keys.size(); start += kBatch) {
            size_t end = std::min(keys.size(), start + kBatch);
            std::vector<Command> meta;
            for (size_t i = start; i < end; ++i) {
                meta.push_back({"TYPE", keys[i]});
                meta.push_back({"PTTL", keys[i]});
            }
            std::vector<Reply> meta_replies = c.pipeline(meta);
            const int64_t now = unix_time_ms();
            std::vector<Command> content;
            for (size_t i = start; i < end; ++i) {
                content.push_back(content_command(meta_replies[2 * (i - start)].str, keys[i]));
            }
            std::vector<Reply> content_replies = c.pipeline(content);
            for (size_t i = start; i < end; ++i) {
                KeyEntry e;
                e.type = meta_replies[2 * (i - start)].str;
                const Reply& pttl = meta_replies[2 * (i - start) + 1];
                if (pttl.type == Reply::Type::Integer && pttl.integer >= 0) {
                    e.has_ttl = true;
                    e.expire_at_ms = now + pttl.integer;
                }
                e.value = render_value(e.type, content_replies[i - start]);
                ks[{db, keys[i]}] = std::move(e);
            }
        }
    }
    return ks;
}

std::string keyspace_summary(const Keyspace& ks) {
    std::map<int, size_t> counts;
    for (const auto& [id, e] : ks) counts[id.first]++;
    std::string out;
    for (const auto& [db, n] : counts) {
        if (!out.empty()) out += ' ';
        out += "db" + std::to_string(db) + "=" + std::to_string(n);
    }
    return out.empty() ? "(empty)" : out;
}

std::string diff_keyspaces(const Keyspace& expected, const Keyspace& actual,
                           const std::string& expected_name, const std::string& actual_name,
                           size_t max_items, int64_t ttl_tolerance_ms) {
    std::vector<std::string> diffs;
    size_t total = 0;
    auto add = [&](const std::pair<int, std::string>& id, const std::string& what) {
        ++total;
        if (diffs.size() < max_items)
            diffs.push_back("  db " + std::to_string(id.first) + " key " + quote_value(id.second) + ": " + what);
    };
    auto e = expected.begin();
    auto a = actual.begin();
    while (e != expected.end() || a != actual.end()) {
        if (a == actual.end() || (e != expected.end() && e->first < a->first)) {
            add(e->first, "missing on " + actual_name + " (" + expected_name + " has " + describe_entry(e->second) + ")");
            ++e;
        } else if (e == expected.end() || a->first < e->first) {
            add(a->first, "only on " + actual_name + " (" + describe_entry(a->second) + ")");
            ++a;
        } else {
            const KeyEntry& x = e->second;
            const KeyEntry& y = a->second;
            if (x.type != y.type || x.value != y.value) {
                add(e->first, expected_name + " has " + describe_entry(x) + ", " + actual_name + " has " +
                                  describe_entry(y));
            } else if (x.has_ttl != y.has_ttl) {
                add(e->first, std::string("TTL ") + (x.has_ttl ? "on " : "not on ") + expected_name + " but " +
                                  (y.has_ttl ? "on " : "not on ") + actual_name);
            } else if (x.has_ttl && std::llabs(x.expire_at_ms - y.expire_at_ms) > ttl_tolerance_ms) {
                add(e->first, "expire times differ by " + std::to_string((y.expire_at_ms - x.expire_at_ms) / 1000) +
                                  " s");
            }
            ++e;
            ++a;
        }
    }
    if (total == 0) return "";
    std::string out = expected_name + " [" + keyspace_summary(expected) + "] vs " + actual_name + " [" +
                      keyspace_summary(actual) + "]: " + std::to_string(total) + " differing keys";
    if (total > diffs.size()) out += ", first " + std::to_string(diffs.size());
    out += ":\n";
    for (const auto& d : diffs) out += d + "\n";
    return out;
}

double wait_keyspace_equal(const RedisServer& reference, const RedisServer& other, double timeout_s) {
    return wait_until(other.name() + "'s keyspace to equal " + reference.name() + "'s", timeout_s,
                      [&](std::string& state) {
                          Keyspace want = read_keyspace(reference.port());
                          Keyspace got = read_keyspace(other.port());
                          state = diff_keyspaces(want, got, reference.name(), other.name());
                          return state.empty();
                      });
}

}  // namespace psync::test
