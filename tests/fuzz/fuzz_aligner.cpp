// Fuzz target: the Aligner (protocol/aligner.h), which places a second SYNC link's
// snapshot in the live stream. A wrong offset or db there gives replicas wrong data.
//
// From the input: a master history (writes in several dbs, MULTI/EXEC blocks, marker
// k-1, the window, marker k, more), the live log as the proxy writes it (a SELECT where
// the db changes, the proxy's PINGs), a fork point, the new link from the fork through
// marker k (its own SELECTs from db 0, other PINGs), and at most one corruption. Checks:
//  - split_commands gives back exactly the generated commands, dbs and end offsets;
//  - align() agrees with a naive reference written here (ok, offset, db, matched) and
//    fails with an error code and a reason;
//  - when the new link's (db, bytes) sequence is the true one (no corruption, or one
//    that changes nothing, e.g. moved PINGs or a harmless copied buffer): ok, with the
//    exact fork offset and db, and a replica served SELECT <db> then the log from X+1
//    runs exactly the master's commands after the fork, each in its db;
//  - whenever align() says ok, the live log from X+1 through marker k holds exactly the
//    new link's (db, bytes) sequence: never ok with an X that is wrong for what it was
//    given; with the command count unchanged by the corruption, never ok with another X.
// And the raw input as a stream window: split_commands never crashes, and when it
// succeeds its commands, dbs and offsets are those a parser of this file finds.
//
// Input layout (see make_seeds.py): 18 header bytes, then commands (see next_command).
//   [0] k  [1..4] first offset of the log  [5] commands before marker k-1  [6] window
//   [7] commands after marker k  [8..9] fork  [10] corruption  [11..12] its parameter
//   [13] a second parameter  [14..17] seed of the PING and SELECT placement
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/aligner.h"
#include "tests/fuzz/fuzz_util.h"

using psync::protocol::align;
using psync::protocol::AlignError;
using psync::protocol::Alignment;
using psync::protocol::marker_nonce;
using psync::protocol::split_commands;
using psync::protocol::StreamCommand;

namespace {

const std::string kChannel = "__psync_proxy__";

std::string mb(const std::vector<std::string>& args) {
    std::string s = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return s;
}
std::string nonce(int k) { return "f00d-" + std::to_string(k); }
std::string marker(int k) { return mb({"PUBLISH", kChannel, nonce(k)}); }
std::string select_cmd(int64_t db) { return mb({"SELECT", std::to_string(db)}); }
const std::string kPing = mb({"PING"});

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

// A lenient multibulk parser, independent of the code under test: the arguments of the
// command at in[pos], and pos moved past it; nullopt if it is not one.
std::optional<std::vector<std::string_view>> parse_one(std::string_view in, size_t& pos) {
    auto number = [&](char prefix, size_t& p) -> std::optional<uint64_t> {
        if (p >= in.size() || in[p] != prefix) return std::nullopt;
        size_t cr = in.find("\r\n", p);
        if (cr == std::string_view::npos || cr == p + 1 || cr - p > 19) return std::nullopt;
        uint64_t v = 0;
        for (size_t i = p + 1; i < cr; ++i) {
            if (in[i] < '0' || in[i] > '9') return std::nullopt;
            v = v * 10 + static_cast<uint64_t>(in[i] - '0');
        }
        p = cr + 2;
        return v;
    };
    size_t p = pos;
    const auto n = number('*', p);
    if (!n || *n == 0) return std::nullopt;
    std::vector<std::string_view> args;
    for (uint64_t i = 0; i < *n; ++i) {
        const auto len = number('$', p);
        if (!len || *len > in.size() - p || in.size() - p - *len < 2) return std::nullopt;
        args.push_back(in.substr(p, *len));
        p += *len;
        if (in[p] != '\r' || in[p + 1] != '\n') return std::nullopt;
        p += 2;
    }
    pos = p;
    return args;
}

std::vector<std::string_view> args_of(std::string_view cmd) {
    size_t pos = 0;
    auto args = parse_one(cmd, pos);
    FUZZ_CHECK(args && pos == cmd.size(), "a split command is not one multibulk command");
    return *args;
}

std::optional<std::string_view> nonce_of(std::string_view cmd) {
    const auto a = args_of(cmd);
    if (a.size() == 3 && ieq(a[0], "publish") && a[1] == kChannel) return a[2];
    return std::nullopt;
}

// One command the master propagated, in the db it ran in.
struct Cmd {
    int64_t db = 0;
    std::string bytes;
    bool operator==(const Cmd&) const = default;
};

struct Reader {
    std::string_view in;
    size_t pos = 0;
    uint8_t byte() { return pos < in.size() ? static_cast<uint8_t>(in[pos++]) : 0; }
    uint32_t u16() { return byte() | (static_cast<uint32_t>(byte()) << 8); }
    uint32_t u32() { return u16() | (u16() << 16); }
    std::string text(size_t max) {
        size_t n = std::min<size_t>(byte() % (max + 1), in.size() - std::min(pos, in.size()));
        std::string s(in.substr(pos, n));
        pos += n;
        return s;
    }
};

using psync::fuzz::Rng;

// The master's history; fork_ok[i]: a fork may fall right before cmds[i] (not between
// a MULTI and its EXEC, which reach the stream in one event-loop pass).
struct History {
    std::vector<Cmd> cmds;
    std::vector<bool> fork_ok;
    size_t prev = 0, mark = 0;  // indexes of marker k-1 and marker k
    int k = 2;
    int64_t db = 0;
    void add(Cmd c, bool ok = true) {
        cmds.push_back(std::move(c));
        fork_ok.push_back(ok);
    }
};

// A write whose name is never PING, SELECT, MULTI or EXEC (those are not commands here,
// or would open a block), nor a marker.
Cmd next_write(Reader& r, int64_t db, uint8_t kind) {
    switch (kind) {
        case 0: return {db, mb({"SET", r.text(12), r.text(24)})};
        case 1: return {db, mb({"INCR", "counter"})};  // identical commands, repeated
        case 2: return {db, mb({"DEL", r.text(12)})};
        case 3: return {db, mb({"LPUSH", r.text(8), r.text(16), r.text(16)})};
        case 4: return {db, mb({"PUBLISH", r.byte() % 2 ? "news" : kChannel + "x", r.text(24)})};
        case 5: return {db, mb({"SET", "m", marker(static_cast<int>(r.byte()))})};  // a marker as a value
        case 6: {
            std::string name = r.text(6);
            if (name.empty() || ieq(name, "ping") || ieq(name, "select") || ieq(name, "multi") || ieq(name, "exec") ||
                ieq(name, "publish"))
                name = "x" + name;
            return {db, mb({name, r.text(8)})};
        }
        default: return {db, mb({"SET", "big", std::string(100 + r.byte() * 4, static_cast<char>(r.byte()))})};
    }
}

// One write or one MULTI/EXEC block: op's top 3 bits choose the db, its low 3 the kind.
void next_command(Reader& r, History& h) {
    const uint8_t op = r.byte();
    switch (op >> 5) {
        case 4: h.db = 0; break;
        case 5: h.db = 1; break;
        case 6: h.db = 5; break;
        case 7: h.db = r.byte() % 16; break;
        default: break;
    }
    if ((op & 7) == 7) {
        h.add({h.db, mb({"MULTI"})});
        for (int n = 1 + (op >> 3) % 3; n > 0; --n) h.add(next_write(r, h.db, r.byte() % 7), false);
        h.add({h.db, mb({"EXEC"})}, false);
    } else {
        h.add(next_write(r, h.db, op & 7));
    }
}

// What one replica link carries, normalized: a SELECT before a command whose db is not
// the one the master believes the link is in (master_db); replica_db is what a replica
// parsing the link tracks. They differ only after a copied output buffer.
struct Link {
    uint64_t first = 1;
    int64_t master_db = 0, replica_db = 0;
    std::string bytes;
    std::vector<StreamCommand> sent;  // what split_commands must give back (views into `texts`)
    std::vector<std::string> texts;
    uint64_t end() const { return first + bytes.size() - 1; }
    void select(int64_t db, bool lower) {
        bytes += lower ? mb({"select", std::to_string(db)}) : select_cmd(db);
        master_db = replica_db = db;
    }
    void send(const Cmd& c) {
        if (c.db != master_db) select(c.db, false);
        bytes += c.bytes;
        texts.push_back(c.bytes);
        sent.push_back({{}, replica_db, end()});
    }
    void fix_views() {
        for (size_t i = 0; i < sent.size(); ++i) sent[i].bytes = texts[i];
    }
};

void check_split(const std::vector<StreamCommand>& got, const std::vector<StreamCommand>& want, const char* what) {
    FUZZ_CHECK(got.size() == want.size(), what);
    for (size_t i = 0; i < got.size(); ++i) {
        FUZZ_CHECK(got[i].bytes == want[i].bytes, what);
        FUZZ_CHECK(got[i].db == want[i].db, what);
        FUZZ_CHECK(got[i].end == want[i].end, what);
    }
}

bool same_sequence(const std::vector<StreamCommand>& a, const std::vector<StreamCommand>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].bytes != b[i].bytes || a[i].db != b[i].db) return false;
    return true;
}

// The reference: what align() must answer, the naive way.
Alignment reference(const std::vector<StreamCommand>& live, uint64_t live_start, int64_t live_start_db,
                    const std::vector<StreamCommand>& fresh, std::string_view want) {
    Alignment a;
    const size_t n = live.size(), m = fresh.size();
    if (m == 0 || nonce_of(fresh.back().bytes) != want) return a;
    if (n == 0 || nonce_of(live.back().bytes) != want) return a;
    for (size_t i = 0; i + 1 < m; ++i)
        if (nonce_of(fresh[i].bytes)) return a;
    for (size_t i = 0; i + 1 < n; ++i)
        if (nonce_of(live[i].bytes)) return a;
    if (m > n) return a;
    if (!same_sequence(fresh, std::vector<StreamCommand>(live.end() - static_cast<ptrdiff_t>(m), live.end()))) return a;
    bool in_multi = false;
    for (size_t i = 0; i < n - m; ++i) {
        const auto args = args_of(live[i].bytes);
        if (ieq(args[0], "multi")) in_multi = true;
        if (ieq(args[0], "exec")) in_multi = false;
    }
    if (in_multi) return a;
    a.ok = true;
    a.matched = m;
    a.offset = n == m ? live_start : live[n - m - 1].end;
    a.db = n == m ? live_start_db : live[n - m - 1].db;
    return a;
}

// The raw input as a window: split_commands against the parser above.
void check_raw(std::string_view in) {
    const uint64_t first = 1 + psync::fuzz::hash_of(in) % 100000;
    int64_t db = 0;
    std::vector<StreamCommand> out;
    std::string error;
    const bool ok = split_commands(in, first, db, out, error);
    FUZZ_CHECK(ok == error.empty(), "split_commands: result and error disagree");
    // Every command given back is the next non-PING, non-SELECT command of the input.
    size_t pos = 0, i = 0;
    int64_t naive_db = 0;
    while (i < out.size()) {
        const size_t start = pos;
        const auto args = parse_one(in, pos);
        FUZZ_CHECK(args.has_value(), "split_commands gave back bytes that are not a command");
        if (ieq((*args)[0], "ping")) continue;
        if (ieq((*args)[0], "select")) {
            FUZZ_CHECK(args->size() == 2, "a SELECT without one argument was accepted");
            naive_db = 0;
            for (char c : (*args)[1]) naive_db = naive_db * 10 + (c - '0');
            continue;
        }
        FUZZ_CHECK(out[i].bytes.data() == in.data() + start && out[i].bytes.size() == pos - start,
                   "a command's bytes are not where it is in the input");
        FUZZ_CHECK(out[i].end == first + pos - 1, "a command's end offset is wrong");
        FUZZ_CHECK(out[i].db == naive_db, "a command's db is wrong");
        ++i;
    }
    if (ok) {
        // Nothing but PINGs and SELECTs after the last command; db is the last SELECT's.
        while (pos < in.size()) {
            const auto args = parse_one(in, pos);
            FUZZ_CHECK(args && (ieq((*args)[0], "ping") || ieq((*args)[0], "select")),
                       "split_commands accepted bytes it did not give back");
            if (ieq((*args)[0], "select")) {
                naive_db = 0;
                for (char c : (*args)[1]) naive_db = naive_db * 10 + (c - '0');
            }
        }
        FUZZ_CHECK(db == naive_db, "db after split_commands is not the last SELECT's");
        // The window aligned with itself: the fork is at its start, unless an earlier marker.
        if (!out.empty()) {
            if (const auto last = nonce_of(out.back().bytes)) {
                const Alignment a = align(out, first - 1, 7, out, kChannel, *last);
                const Alignment ref = reference(out, first - 1, 7, out, *last);
                FUZZ_CHECK(a.ok == ref.ok, "align(w, w) disagrees with the reference");
                if (a.ok) FUZZ_CHECK(a.offset == first - 1 && a.db == 7, "align(w, w) is not at its start");
            }
        }
    }
    for (const StreamCommand& c : out) (void)marker_nonce(c.bytes, kChannel);
    (void)marker_nonce(in, kChannel);
}

enum Corruption : uint8_t {
    kNone,
    kFlipFreshByte,   // byte-level, in the new link's bytes
    kFlipLiveByte,    // byte-level, in the live window
    kCopiedBuffer,    // the master tracks the link's db from 0 from a point on
    kWrongStartDb,    // the link really starts in another db
    kDropCommand,
    kExtraMarker,     // another nonce of ours on the new link
    kNoFreshMarker,
    kOtherLiveMarker, // the live window ends with marker k+1
    kPrepend,         // commands before the fork, or made up, before the new link's first
    kOtherDb,         // one command in another db (with its SELECTs)
    kSwap,
    kChangeByte,      // inside one command's last argument, still whole multibulk
    kMovePings,       // other PINGs and redundant SELECTs: the same sequence
    kDuplicate,
    kLiveTooEarly,    // the live window starts at the log's start, before marker k-1
    kLiveTooLate,     // the live window starts after some commands of the true window
    kCount
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    check_raw(input);

    Reader r{input};
    History h;
    h.k = 2 + r.byte() % 60;
    const uint64_t log_first = 1 + r.u32();
    const size_t n_prefix = r.byte() % 6, n_window = r.byte() % 48, n_suffix = r.byte() % 4;
    const uint32_t fork_sel = r.u16();
    const auto corruption = static_cast<Corruption>(r.byte() % kCount);
    const uint32_t param = r.u16();
    const uint8_t param2 = r.byte();
    Rng rng{(static_cast<uint64_t>(r.u32()) << 1) | 1};

    while (h.cmds.size() < n_prefix) next_command(r, h);
    h.prev = h.cmds.size();
    h.add({0, marker(h.k - 1)});
    h.db = 0;
    while (h.cmds.size() < h.prev + 1 + n_window) next_command(r, h);
    h.mark = h.cmds.size();
    h.add({0, marker(h.k)});
    h.db = 0;
    for (size_t i = 0; i < n_suffix; ++i) next_command(r, h);

    // The live log: the proxy's PINGs at command boundaries, a SELECT sometimes
    // written a little early (a PING between it and its command), sometimes redundant.
    Link live;
    live.first = log_first;
    for (const Cmd& c : h.cmds) {
        if (rng.one_in(4)) live.bytes += kPing;
        if (c.db != live.master_db && rng.one_in(3)) {
            live.select(c.db, false);
            if (rng.one_in(2)) live.bytes += kPing;
        } else if (rng.one_in(16)) {
            live.select(live.master_db, false);
        }
        live.send(c);
    }
    live.fix_views();
    // The live window: cmds[win] through marker k; live_start is where it starts (the
    // end of marker k-1 unless a corruption moves it) and live_start_db the db there.
    size_t win = h.prev + 1;
    if (corruption == kLiveTooEarly) win = 0;
    if (corruption == kLiveTooLate) win = h.prev + 1 + param2 % (h.mark - h.prev);
    const uint64_t live_start = win == 0 ? live.first - 1 : live.sent[win - 1].end;
    const int64_t live_start_db = win == 0 ? 0 : live.sent[win - 1].db;
    std::string window(std::string_view(live.bytes).substr(live_start + 1 - live.first,
                                                           live.sent[h.mark].end - live_start));
    const std::vector<StreamCommand> live_truth(live.sent.begin() + static_cast<ptrdiff_t>(win),
                                                live.sent.begin() + static_cast<ptrdiff_t>(h.mark) + 1);

    // The fork: right before cmds[fork], never inside MULTI/EXEC.
    size_t fork = h.prev + 1 + fork_sel % (h.mark - h.prev);
    while (!h.fork_ok[fork]) ++fork;  // cmds[h.mark], marker k, is always a fork point
    const uint64_t true_x = live.sent[fork - 1].end;
    const int64_t true_db = h.cmds[fork - 1].db;

    // The new link's commands, and the corruption at the level of commands.
    std::vector<Cmd> fresh_cmds(h.cmds.begin() + static_cast<ptrdiff_t>(fork),
                                h.cmds.begin() + static_cast<ptrdiff_t>(h.mark) + 1);
    const std::vector<Cmd> true_cmds = fresh_cmds;
    const size_t at = param % fresh_cmds.size();
    size_t copy_at = fresh_cmds.size() + 1;  // none
    int64_t start_db = 0;
    switch (corruption) {
        case kCopiedBuffer: copy_at = at; break;
        case kWrongStartDb: start_db = param2 % 16; break;
        case kDropCommand: fresh_cmds.erase(fresh_cmds.begin() + static_cast<ptrdiff_t>(at)); break;
        case kExtraMarker:
            fresh_cmds.insert(fresh_cmds.begin() + static_cast<ptrdiff_t>(at),
                              Cmd{0, param2 % 2 ? marker(h.k - 1) : mb({"PUBLISH", kChannel, "other"})});
            break;
        case kNoFreshMarker: fresh_cmds.pop_back(); break;
        case kPrepend: {
            std::vector<Cmd> extra;
            if (param2 % 2) {  // an earlier fork: the commands before it, maybe marker k-1 too
                size_t from = fork - std::min<size_t>(fork, 1 + param % 8);
                extra.assign(h.cmds.begin() + static_cast<ptrdiff_t>(from), h.cmds.begin() + static_cast<ptrdiff_t>(fork));
            } else {
                for (size_t i = 0; i <= param % 3; ++i) extra.push_back({static_cast<int64_t>(i), mb({"SET", "made", "up"})});
            }
            fresh_cmds.insert(fresh_cmds.begin(), extra.begin(), extra.end());
            break;
        }
        case kOtherDb: fresh_cmds[at].db = (fresh_cmds[at].db + 1 + param2 % 15) % 16; break;
        case kSwap:
            if (at + 1 < fresh_cmds.size()) std::swap(fresh_cmds[at], fresh_cmds[at + 1]);
            break;
        case kChangeByte: {
            std::string& b = fresh_cmds[at].bytes;
            const bool empty_last = b.size() >= 6 && b.compare(b.size() - 6, 6, "$0\r\n\r\n") == 0;
            b[empty_last ? b.find("\r\n", b.find('$')) + 2 : b.size() - 3] ^= static_cast<char>(1 + param2 % 255);
            // The name may have become PING, SELECT, MULTI or EXEC: the checks below hold anyway.
            break;
        }
        case kDuplicate:
            fresh_cmds.insert(fresh_cmds.begin() + static_cast<ptrdiff_t>(at), fresh_cmds[at]);
            break;
        default: break;
    }

    // The new link: its own SELECTs from db 0 (as the master sees it), other PINGs.
    Link fresh;
    fresh.first = 1 + (param2 * 7919u);
    fresh.master_db = start_db;  // kWrongStartDb: the master believes it in start_db, a parser assumes 0
    for (size_t i = 0; i < fresh_cmds.size(); ++i) {
        if (i == copy_at) fresh.master_db = 0;  // this link's own db tracking starts
        if (rng.one_in(3)) fresh.bytes += rng.one_in(2) ? kPing : mb({"ping", "x"});
        if (corruption == kMovePings) {
            if (rng.one_in(2)) fresh.bytes += mb({"PiNg"});
            if (rng.one_in(4)) fresh.select(fresh.master_db, rng.one_in(2));
        }
        fresh.send(fresh_cmds[i]);
    }
    if (rng.one_in(2)) fresh.bytes += kPing;
    fresh.fix_views();

    if (corruption == kFlipFreshByte && !fresh.bytes.empty())
        fresh.bytes[param % fresh.bytes.size()] ^= static_cast<char>(1 + param2 % 255);
    if (corruption == kFlipLiveByte && !window.empty())
        window[param % window.size()] ^= static_cast<char>(1 + param2 % 255);
    const bool bytes_changed = corruption == kFlipFreshByte || corruption == kFlipLiveByte;
    // A live window that does not hold the true one (the fork lies before its start).
    const bool live_changed = corruption == kFlipLiveByte || corruption == kOtherLiveMarker ||
                              corruption == kLiveTooEarly || (corruption == kLiveTooLate && fork < win);

    // Split both windows; without byte-level corruption exactly as generated.
    std::vector<StreamCommand> live_cmds, fresh_split;
    std::string error;
    int64_t db = live_start_db;
    const bool live_ok = split_commands(window, live_start + 1, db, live_cmds, error);
    FUZZ_CHECK(live_ok == error.empty(), "split_commands: result and error disagree");
    if (corruption != kFlipLiveByte) {
        FUZZ_CHECK(live_ok, "the live window does not split");
        check_split(live_cmds, live_truth, "the live window splits into other commands than generated");
    }
    error.clear();
    db = 0;  // the new link's db is assumed 0 at its start
    const bool fresh_ok = split_commands(fresh.bytes, fresh.first, db, fresh_split, error);
    FUZZ_CHECK(fresh_ok == error.empty(), "split_commands: result and error disagree");
    if (corruption != kFlipFreshByte && corruption != kChangeByte) {
        FUZZ_CHECK(fresh_ok, "the new link does not split");
        check_split(fresh_split, fresh.sent, "the new link splits into other commands than generated");
    }
    if (!live_ok || !fresh_ok) {
        FUZZ_CHECK(bytes_changed || corruption == kChangeByte, "a generated window did not split");
        return 0;
    }

    const std::string k_nonce = nonce(h.k);
    std::string alt_marker;
    std::vector<StreamCommand> live_window = live_cmds;
    if (corruption == kOtherLiveMarker) {
        alt_marker = marker(h.k + 1);
        live_window.back().bytes = alt_marker;
    }
    const Alignment a = align(live_window, live_start, live_start_db, fresh_split, kChannel, k_nonce);
    const Alignment ref = reference(live_window, live_start, live_start_db, fresh_split, k_nonce);
    FUZZ_CHECK(a.ok == ref.ok, a.ok ? "align() ok where the reference is not" : "align() refused a valid alignment");
    if (a.ok) {
        FUZZ_CHECK(a.offset == ref.offset && a.db == ref.db && a.matched == ref.matched, "align() is not the reference");
        FUZZ_CHECK(a.error == AlignError::kNone && a.reason.empty(), "ok with an error");
    } else {
        FUZZ_CHECK(a.error != AlignError::kNone && !a.reason.empty(), "refused without an error and a reason");
    }

    // The truth: the new link's sequence as the master's history has it.
    std::vector<StreamCommand> truth;
    for (const Cmd& c : true_cmds) truth.push_back({c.bytes, c.db, 0});
    const bool true_sequence = same_sequence(fresh_split, truth);
    if (!live_changed && true_sequence) {
        FUZZ_CHECK(a.ok, "the true sequence was not aligned");
        FUZZ_CHECK(a.offset == true_x, "aligned at a wrong offset");
        FUZZ_CHECK(a.db == true_db, "aligned with a wrong db");
        // A replica served SELECT <db> then the log from X+1 runs the master's commands
        // after the fork, each in its db (through the end of the log, past marker k too).
        int64_t served_db = a.db;
        std::vector<StreamCommand> served;
        std::string e;
        FUZZ_CHECK(split_commands(std::string_view(live.bytes).substr(a.offset + 1 - live.first), a.offset + 1,
                                  served_db, served, e),
                   "the log from X+1 does not split");
        FUZZ_CHECK(served.size() == h.cmds.size() - fork, "the replica is served other commands");
        for (size_t i = 0; i < served.size(); ++i) {
            FUZZ_CHECK(served[i].bytes == h.cmds[fork + i].bytes, "the replica is served other commands");
            FUZZ_CHECK(served[i].db == h.cmds[fork + i].db, "the replica runs a command in another db");
        }
    }
    if (a.ok && !live_changed) {
        // Whatever the corruption, X is right for what align() was given: the live log
        // from X+1 through marker k holds exactly the new link's sequence.
        FUZZ_CHECK(a.offset >= live_start && a.offset < live.sent[h.mark].end, "X outside the window");
        int64_t served_db = a.db;
        std::vector<StreamCommand> served;
        std::string e;
        FUZZ_CHECK(split_commands(std::string_view(live.bytes).substr(a.offset + 1 - live.first,
                                                                      live.sent[h.mark].end - a.offset),
                                  a.offset + 1, served_db, served, e),
                   "the log from X+1 through marker k does not split");
        FUZZ_CHECK(same_sequence(served, fresh_split), "ok with an X that is wrong for the new link given");
        if (fresh_split.size() == truth.size()) FUZZ_CHECK(a.offset == true_x, "ok with another X, same command count");
    }
    return 0;
}
