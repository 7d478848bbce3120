// Fuzz target: the stream tracker (protocol/stream_tracker.h), which tells a standby's
// takeover which master commands the active never delivered. A wrong answer there loses or
// repeats writes on every replica.
//
// From the input (through a PRNG seeded by its hash, and its bytes as command content): a
// master history of N commands in several dbs; the live stream (the active's log: a SELECT
// where the db changes, its PINGs, pieces cut anywhere) holding the first M of them; the own
// link holding all N (its own SELECT placement, redundant SELECTs too, other pieces); the two
// fed to the tracker interleaved in an order the input picks; at most one corrupted byte in a
// command of the own link. Checks:
//  - with no corruption it never fails, behind() is 0 at the end, and the live stream plus
//    splice() plus the own link's partial command is exactly the master history, each
//    command in its db (what a replica of the spliced log runs);
//  - with a corruption in one of the first M own commands (those compared) it fails;
//  - the raw input fed as both streams, in pieces, never crashes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/aligner.h"
#include "protocol/stream_tracker.h"
#include "tests/fuzz/fuzz_util.h"

using psync::protocol::select_command;
using psync::protocol::split_commands;
using psync::protocol::StreamCommand;
using psync::protocol::StreamTracker;

namespace {

using psync::fuzz::Rng;

std::string mb(const std::vector<std::string>& args) {
    std::string s = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return s;
}

struct Cmd {
    int64_t db;
    std::string bytes;
};

// A stream of commands as (bytes, at_boundary) pieces: whole runs of commands, or one
// command cut in pieces.
std::vector<std::pair<std::string, bool>> pieces_of(const std::vector<std::string>& units, Rng& r) {
    std::vector<std::pair<std::string, bool>> out;
    size_t i = 0;
    while (i < units.size()) {
        if (r.below(4) == 0 && units[i].size() > 2) {
            const std::string& u = units[i];
            size_t at = 0;
            while (at < u.size()) {
                size_t n = 1 + r.below(u.size() - at);
                out.push_back({u.substr(at, n), at + n == u.size()});
                at += n;
            }
            ++i;
            continue;
        }
        std::string run;
        size_t k = 1 + r.below(4);
        for (; k > 0 && i < units.size(); --k) run += units[i++];
        out.push_back({run, true});
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    Rng r{psync::fuzz::hash_of(in) | 1};

    // The raw input as both streams: no crash, whatever it is.
    {
        StreamTracker t(1 << 16);
        for (const auto& sizes : psync::fuzz::splits_of(in)) {
            size_t at = 0;
            for (size_t n : sizes) {
                const bool boundary = (r.next() & 1) != 0;
                t.feed_live(in.substr(at, n), boundary);
                t.feed_own(in.substr(at, n), !boundary);
                at += n;
            }
        }
        (void)t.splice();
    }

    // A master history.
    const size_t n = 1 + r.below(40);
    const size_t m = r.below(n + 1);
    std::vector<Cmd> history;
    int64_t db = 0;
    for (size_t i = 0; i < n; ++i) {
        if (r.below(3) == 0) db = static_cast<int64_t>(r.below(4));
        std::string value;
        const size_t len = r.below(24);
        for (size_t k = 0; k < len; ++k) value += size ? static_cast<char>(data[(i * 31 + k) % size]) : 'v';
        history.push_back({db, mb({r.below(5) == 0 ? "INCR" : "SET", "k" + std::to_string(r.below(8)), value})});
    }
    // The live stream: history[0..m) with a SELECT where the db changes, PINGs in between.
    std::vector<std::string> live_units;
    int64_t live_db = 0;
    for (size_t i = 0; i < m; ++i) {
        if (r.below(4) == 0) live_units.push_back(mb({"PING"}));
        if (history[i].db != live_db) {
            live_units.push_back(select_command(history[i].db));
            live_db = history[i].db;
        }
        live_units.push_back(history[i].bytes);
    }
    // The own link: all of it, its SELECTs where it likes (redundant ones too).
    const bool corrupt = r.below(3) == 0;
    const size_t bad = r.below(n);
    std::vector<std::string> own_units;
    int64_t own_db = 0;
    for (size_t i = 0; i < n; ++i) {
        if (history[i].db != own_db || r.below(6) == 0) {
            own_units.push_back(select_command(history[i].db));
            own_db = history[i].db;
        }
        std::string bytes = history[i].bytes;
        if (corrupt && i == bad) {
            // One byte of the last argument's content (the command stays RESP).
            size_t at = bytes.size() - 3;
            bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
        }
        own_units.push_back(bytes);
    }
    // It may have switched db for a command that has not come yet.
    if (r.below(3) == 0) {
        own_db = static_cast<int64_t>(r.below(4));
        own_units.push_back(select_command(own_db));
    }
    // The own link may end in the middle of a command that follows: kept as the partial.
    std::string own_tail;
    if (r.below(3) == 0) {
        const std::string next = mb({"SET", "tail", "x"});
        own_tail = next.substr(0, 1 + r.below(next.size() - 1));
    }

    auto live_pieces = pieces_of(live_units, r);
    auto own_pieces = pieces_of(own_units, r);
    if (!own_tail.empty()) own_pieces.push_back({own_tail, false});
    StreamTracker t;
    size_t li = 0, oi = 0;
    while (li < live_pieces.size() || oi < own_pieces.size()) {
        const bool take_live = oi == own_pieces.size() || (li < live_pieces.size() && (r.next() & 1));
        if (take_live) {
            t.feed_live(live_pieces[li].first, live_pieces[li].second);
            ++li;
        } else {
            t.feed_own(own_pieces[oi].first, own_pieces[oi].second);
            ++oi;
        }
    }

    // A corrupted command whose bytes actually changed, among those both sides delivered.
    const bool compared_bad = corrupt && bad < m;
    if (!corrupt) {
        FUZZ_CHECK(!t.failed(), t.error().c_str());
        FUZZ_CHECK(t.behind() == 0, "the own link has every command the live stream has");
        // A replica of the spliced log runs the master's history, each command in its db.
        std::string log;
        for (const auto& u : live_units) log += u;
        log += t.splice();
        log += t.own_partial();
        FUZZ_CHECK(t.own_partial() == own_tail, "the own link's partial command is kept as it came");
        log += mb({"SET", "tail", "x"}).substr(own_tail.size());  // the link delivers the rest
        int64_t replica_db = 0;
        std::vector<StreamCommand> ran;
        std::string error;
        FUZZ_CHECK(split_commands(log, 1, replica_db, ran, error), error.c_str());
        FUZZ_CHECK(ran.size() == n + 1, "one command each, and the tail");
        for (size_t i = 0; i < n; ++i) {
            FUZZ_CHECK(ran[i].bytes == history[i].bytes, "the same command");
            FUZZ_CHECK(ran[i].db == history[i].db, "in the same db");
        }
        FUZZ_CHECK(ran[n].db == own_db, "the tail runs in the own link's db");
    } else if (compared_bad) {
        FUZZ_CHECK(t.failed(), "a command that differs between the two streams is noticed");
        FUZZ_CHECK(t.splice().empty(), "nothing to splice once failed");
    }
    return 0;
}
