// Shared by the fuzz targets: deterministic ways to cut an input in pieces (derived from the
// input itself, so a crashing input reproduces alone), and a check that aborts with a message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace psync::fuzz {

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line, const char* what) {
    std::fprintf(stderr, "\nFUZZ CHECK FAILED at %s:%d: %s\n  %s\n", file, line, expr, what);
    std::abort();  // libFuzzer reports the crash and saves the input
}

#define FUZZ_CHECK(expr, what)                                                   \
    do {                                                                        \
        if (!(expr)) ::psync::fuzz::check_failed(#expr, __FILE__, __LINE__, what); \
    } while (0)

// FNV-1a of the input: the seed of the pseudo-random splits.
inline uint64_t hash_of(std::string_view in) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : in) h = (h ^ c) * 1099511628211ull;
    return h;
}

// A xorshift generator: the targets' own choices, derived from the input.
struct Rng {
    uint64_t x;
    uint64_t next() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    }
    bool one_in(uint64_t n) { return next() % n == 0; }
    size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

// Sizes of consecutive pieces covering `total` bytes, each 1..max_chunk, from `seed`.
inline std::vector<size_t> random_pieces(uint64_t seed, size_t total, size_t max_chunk) {
    std::vector<size_t> sizes;
    uint64_t x = seed | 1;
    size_t sum = 0;
    while (sum < total) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = 1 + static_cast<size_t>(x % max_chunk);
        if (n > total - sum) n = total - sum;
        sizes.push_back(n);
        sum += n;
    }
    return sizes;
}

// The ways each target cuts its input: whole, byte by byte (small inputs), in two at a point
// chosen by the input's hash, and in pseudo-random pieces of up to 3 and up to 64 bytes.
inline std::vector<std::vector<size_t>> splits_of(std::string_view in) {
    const uint64_t h = hash_of(in);
    std::vector<std::vector<size_t>> out;
    out.push_back({in.size()});
    if (in.size() <= 2048) out.push_back(std::vector<size_t>(in.size(), 1));
    if (!in.empty()) {
        size_t at = static_cast<size_t>(h % (in.size() + 1));
        out.push_back({at, in.size() - at});
    }
    out.push_back(random_pieces(h, in.size(), 3));
    out.push_back(random_pieces(h >> 17, in.size(), 64));
    return out;
}

}  // namespace psync::fuzz
