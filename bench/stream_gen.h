// A realistic replication stream, as an old (2.6) master sends it after its
// RDB: SET / INCR / LPUSH / HSET with typical key and value sizes, spread
// over a few dbs, with the db switches as 2.6 writes them (inline, lower case
// "select N\r\n"). Shared by the parser benchmark (scenario 6) and the
// scripted upstream of the capacity benchmark (scenario 2).
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

namespace psync::bench {

struct StreamStats {
  uint64_t commands = 0;     // data commands (SELECTs not counted)
  uint64_t selects = 0;      // db switches
  uint64_t out_bytes = 0;    // bytes after normalization (inline select re-encoded as multibulk)
};

// Small, fast, deterministic (xorshift64*).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 1) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  uint64_t below(uint64_t n) { return next() % n; }

 private:
  uint64_t s_;
};

namespace detail {
inline void bulk(std::string& out, const char* p, size_t n) {
  out += '$';
  out += std::to_string(n);
  out += "\r\n";
  out.append(p, n);
  out += "\r\n";
}
inline void bulk(std::string& out, const std::string& s) { bulk(out, s.data(), s.size()); }
}  // namespace detail

// The value size of a typical cache/session/queue workload: mostly small,
// a long tail (mean about 200 bytes).
inline size_t typical_value_size(Rng& rng) {
  uint64_t r = rng.below(100);
  if (r < 40) return 8 + rng.below(25);      // 8-32: ids, flags, short strings
  if (r < 80) return 32 + rng.below(97);     // 32-128: small JSON, tokens
  if (r < 95) return 128 + rng.below(385);   // 128-512: objects
  return 512 + rng.below(3585);              // 512-4096: documents
}

// Appends whole commands to `out` until it holds at least `bytes` bytes.
// value_size 0: typical sizes (mixed commands, dbs 0-3, a db switch about
// every 200 commands); value_size > 0: SET only, in db 0, values of exactly
// that size (the normalizer author's fixed-size measurements).
// inline_select: 2.6's "select N\r\n" (true) or multibulk SELECT (false).
inline StreamStats generate_stream(std::string& out, size_t bytes, size_t value_size = 0,
                                   bool inline_select = true, uint64_t seed = 42) {
  StreamStats st;
  Rng rng(seed);
  std::string value(std::max<size_t>(4096, value_size) + 64, 'x');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>('a' + rng.below(26));
  int db = 0;
  char key[64];
  char field[32];
  size_t start = out.size();
  while (out.size() - start < bytes) {
    size_t before = out.size();
    if (value_size == 0 && rng.below(200) == 0) {
      int next = static_cast<int>(rng.below(4));
      if (next != db) {
        db = next;
        std::string n = std::to_string(db);
        std::string multibulk = "*2\r\n$6\r\nSELECT\r\n$" + std::to_string(n.size()) + "\r\n" + n + "\r\n";
        if (inline_select) {
          out += "select " + n + "\r\n";
        } else {
          out += multibulk;
        }
        st.selects++;
        st.out_bytes += multibulk.size();
        continue;
      }
    }
    uint64_t kind = value_size ? 0 : rng.below(100);
    size_t vlen = value_size ? value_size : typical_value_size(rng);
    const char* v = value.data() + rng.below(64);
    if (kind < 40) {  // SET user:<id> <value>
      int kl = snprintf(key, sizeof key, "user:%llu", static_cast<unsigned long long>(rng.below(10000000)));
      out += "*3\r\n";
      detail::bulk(out, "SET", 3);
      detail::bulk(out, key, static_cast<size_t>(kl));
      detail::bulk(out, v, vlen);
    } else if (kind < 60) {  // INCR counter:<id>
      int kl = snprintf(key, sizeof key, "counter:%llu", static_cast<unsigned long long>(rng.below(100000)));
      out += "*2\r\n";
      detail::bulk(out, "INCR", 4);
      detail::bulk(out, key, static_cast<size_t>(kl));
    } else if (kind < 80) {  // LPUSH queue:<id> <value>
      int kl = snprintf(key, sizeof key, "queue:%llu", static_cast<unsigned long long>(rng.below(1000)));
      out += "*3\r\n";
      detail::bulk(out, "LPUSH", 5);
      detail::bulk(out, key, static_cast<size_t>(kl));
      detail::bulk(out, v, vlen);
    } else {  // HSET session:<id> <field> <value>
      int kl = snprintf(key, sizeof key, "session:%llu", static_cast<unsigned long long>(rng.below(1000000)));
      int fl = snprintf(field, sizeof field, "f%llu", static_cast<unsigned long long>(rng.below(20)));
      out += "*4\r\n";
      detail::bulk(out, "HSET", 4);
      detail::bulk(out, key, static_cast<size_t>(kl));
      detail::bulk(out, field, static_cast<size_t>(fl));
      detail::bulk(out, v, vlen);
    }
    st.commands++;
    st.out_bytes += out.size() - before;
  }
  // A cyclic replay must start back in db 0, as the replica assumes.
  if (db != 0) {
    if (inline_select) {
      out += "select 0\r\n";
    } else {
      out += "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n";
    }
    st.selects++;
    st.out_bytes += 23;
  }
  return st;
}

}  // namespace psync::bench
