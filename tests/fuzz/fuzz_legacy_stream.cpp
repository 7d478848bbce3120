// Fuzz target: the legacy stream normalizer (protocol/legacy_stream.h), everything an
// upstream master sends after its RDB. Checks, for default limits and for small ones:
//  - no crash, no sanitizer report;
//  - the output is RESP multibulk only: whole commands of at least one argument, never a
//    PING (upstream PINGs are dropped), and a piece delivered with at_boundary=true ends
//    exactly at the end of a command (where the proxy may insert its own PING);
//  - however the input is cut into reads: the same success or error (same message, same
//    position), the same commands() count, the same PINGs at the same places, and the same
//    output (a command passed through in pieces may have been partly delivered before its
//    error showed: on error, one output must extend the other only past the last boundary).
#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/legacy_stream.h"
#include "tests/fuzz/fuzz_util.h"

using psync::protocol::LegacyStream;
using psync::protocol::StreamLimits;
using psync::protocol::StreamSink;

namespace {

struct Sink : StreamSink {
    std::string out;
    std::vector<std::pair<size_t, bool>> pieces;  // (end offset in out, at_boundary)
    std::vector<size_t> pings;
    size_t last_boundary = 0;  // end of the last piece delivered with at_boundary
    // (upstream position, output size) at each boundary: where a resumed link
    // would start, and what the log holds then.
    std::vector<std::pair<uint64_t, size_t>> marks;
    uint64_t fed = 0;  // upstream bytes fed so far, the current feed included
    void mark(uint64_t upstream_end) {
        FUZZ_CHECK(upstream_end <= fed, "a boundary past the bytes fed");
        FUZZ_CHECK(marks.empty() || (marks.back().first <= upstream_end && marks.back().second <= out.size()),
                   "boundary positions go backwards");
        marks.emplace_back(upstream_end, out.size());
    }
    void on_stream(std::string_view bytes, bool at_boundary, uint64_t upstream_end) override {
        FUZZ_CHECK(!bytes.empty(), "an empty piece was delivered");
        out.append(bytes);
        pieces.emplace_back(out.size(), at_boundary);
        if (at_boundary) {
            last_boundary = out.size();
            mark(upstream_end);
        }
    }
    void on_upstream_ping(uint64_t upstream_end) override {
        pings.push_back(out.size());
        mark(upstream_end);
    }
};

struct Run {
    bool ok = true;
    std::string error, out;
    std::vector<size_t> pings;
    size_t last_boundary = 0;
    uint64_t commands = 0, bytes_in = 0;
    bool at_boundary = true;
    std::vector<std::pair<size_t, bool>> pieces;
    std::vector<std::pair<uint64_t, size_t>> marks;
};

Run run(std::string_view input, const std::vector<size_t>& sizes, const StreamLimits& limits) {
    LegacyStream stream(limits);
    Sink sink;
    Run r;
    size_t pos = 0;
    for (size_t n : sizes) {
        if (pos >= input.size()) break;
        sink.fed = pos + std::min(n, input.size() - pos);
        if (!stream.feed(input.substr(pos, n), sink)) {
            r.ok = false;
            break;
        }
        pos += n;
    }
    r.error = stream.error();
    FUZZ_CHECK(r.ok == r.error.empty(), "feed() result and error() disagree");
    if (!r.ok) {
        // Refuses more input until reset.
        std::string before = sink.out;
        FUZZ_CHECK(!stream.feed("*1\r\n$4\r\nINCR\r\n", sink) && sink.out == before, "accepted input after an error");
    }
    r.out = sink.out;
    r.pings = sink.pings;
    r.pieces = sink.pieces;
    r.marks = sink.marks;
    r.last_boundary = sink.last_boundary;
    r.commands = stream.commands();
    r.bytes_in = stream.bytes_in();
    r.at_boundary = stream.at_boundary();
    if (r.ok) FUZZ_CHECK(r.bytes_in == input.size(), "bytes_in() is not the bytes fed");
    return r;
}

bool ieq(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

// Parses out[0, end) as RESP multibulk commands, independently of the code under test.
// Returns the offsets where commands end; FUZZ_CHECKs that it parses completely.
std::vector<size_t> command_ends(std::string_view out, size_t end) {
    std::vector<size_t> ends;
    size_t p = 0;
    auto number = [&](char prefix) -> uint64_t {
        FUZZ_CHECK(p < end && out[p] == prefix, "output is not RESP multibulk (prefix)");
        size_t cr = out.find("\r\n", p);
        FUZZ_CHECK(cr != std::string_view::npos && cr + 2 <= end && cr > p + 1 && cr - p <= 21,
                   "output is not RESP multibulk (length line)");
        uint64_t v = 0;
        for (size_t i = p + 1; i < cr; ++i) {
            FUZZ_CHECK(out[i] >= '0' && out[i] <= '9', "output has a bad length line");
            v = v * 10 + static_cast<uint64_t>(out[i] - '0');
        }
        p = cr + 2;
        return v;
    };
    while (p < end) {
        uint64_t n = number('*');
        FUZZ_CHECK(n >= 1, "an empty command in the output");
        for (uint64_t i = 0; i < n; ++i) {
            uint64_t len = number('$');
            FUZZ_CHECK(len <= end - p && end - p - len >= 2, "a bulk runs past the output");
            if (i == 0) FUZZ_CHECK(!ieq(out.substr(p, len), "ping"), "an upstream PING reached the output");
            p += len;
            FUZZ_CHECK(out[p] == '\r' && out[p + 1] == '\n', "a bulk is not followed by CRLF in the output");
            p += 2;
        }
        ends.push_back(p);
    }
    return ends;
}

void check_output(const Run& r) {
    const std::vector<size_t> ends = command_ends(r.out, r.last_boundary);
    for (auto [end, at_boundary] : r.pieces) {
        if (end > r.last_boundary) {
            FUZZ_CHECK(!at_boundary, "a boundary piece past the last boundary");
            continue;
        }
        const bool is_end = std::binary_search(ends.begin(), ends.end(), end);
        FUZZ_CHECK(is_end == at_boundary, "at_boundary does not match the end of a command");
    }
    // What follows the last boundary is the start of one command being passed through.
    if (r.ok && r.at_boundary) FUZZ_CHECK(r.last_boundary == r.out.size(), "at_boundary() with bytes after the last boundary");
    for (size_t ping : r.pings) FUZZ_CHECK(ping <= r.out.size(), "ping position past the output");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    StreamLimits small;
    small.max_inline_len = 48;
    small.max_multibulk_count = 8;
    small.max_bulk_len = 200;
    small.max_held = 16;  // most commands cut by a read pass through in pieces
    for (const StreamLimits& limits : {StreamLimits{}, small}) {
        const auto splits = psync::fuzz::splits_of(input);
        const Run whole = run(input, splits[0], limits);
        check_output(whole);
        // A boundary's upstream position determines what the log holds there,
        // however the input was split (the resume offset and the log's end are
        // one fact).
        std::map<uint64_t, size_t> out_at;
        auto check_marks = [&out_at](const Run& r) {
            for (auto [upstream_end, out_size] : r.marks) {
                auto [it, fresh] = out_at.emplace(upstream_end, out_size);
                FUZZ_CHECK(fresh || it->second == out_size, "one upstream position, two log ends");
            }
        };
        check_marks(whole);
        for (size_t i = 1; i < splits.size(); ++i) {
            const Run split = run(input, splits[i], limits);
            check_output(split);
            check_marks(split);
            FUZZ_CHECK(split.ok == whole.ok, "success depends on the split");
            FUZZ_CHECK(split.error == whole.error, "the error depends on the split");
            FUZZ_CHECK(split.commands == whole.commands, "commands() depends on the split");
            FUZZ_CHECK(split.bytes_in == whole.bytes_in, "bytes_in() depends on the split");
            FUZZ_CHECK(split.pings == whole.pings, "PINGs depend on the split");
            FUZZ_CHECK(split.last_boundary == whole.last_boundary &&
                           split.out.compare(0, split.last_boundary, whole.out, 0, whole.last_boundary) == 0,
                       "the whole commands delivered depend on the split");
            if (whole.ok) FUZZ_CHECK(split.out == whole.out, "the output depends on the split");
        }
    }
    return 0;
}
