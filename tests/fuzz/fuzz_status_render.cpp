// Fuzz target: GET /status and GET /metrics with hostile peer strings in the proxy's state
// (proxy/status_view.h). The input is cut into strings (a length byte, then that many bytes);
// they fill every string of a StatusView twice over: as the proxy keeps peer strings (through
// protocol::peer_text(), as the upstream link and the sessions do) and raw (what a bug that
// skipped it, or a --dir path, would put there). Numbers come from the input's hash.
// Checks: no crash, no exception, no sanitizer report; the /status text parses back as JSON
// (nlohmann's parser refuses strings that are not UTF-8) with every peer_text() string shown
// exactly; peer_text() output is printable ASCII within its limit; the metrics are one
// comment or one sample a line, whatever the label values hold.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/text.h"
#include "proxy/status_view.h"
#include "tests/fuzz/fuzz_util.h"

using nlohmann::json;
using psync::proxy::StatusView;

namespace {

// Length-prefixed pieces; the last one may be short. Never empty: at least one string.
std::vector<std::string> pieces_of(std::string_view in) {
    std::vector<std::string> out;
    while (!in.empty()) {
        size_t n = static_cast<unsigned char>(in[0]);
        in.remove_prefix(1);
        n = std::min(n, in.size());
        out.emplace_back(in.substr(0, n));
        in.remove_prefix(n);
    }
    if (out.empty()) out.emplace_back();
    return out;
}

class Numbers {
public:
    explicit Numbers(uint64_t seed) : x_(seed | 1) {}
    uint64_t next() {
        x_ ^= x_ << 13;
        x_ ^= x_ >> 7;
        x_ ^= x_ << 17;
        return x_;
    }
    // Seconds as the proxy has them (-1: never) and the odd ones a clock could give.
    double seconds() {
        switch (next() % 6) {
            case 0: return -1;
            case 1: return 0;
            case 2: return std::numeric_limits<double>::infinity();
            case 3: return std::numeric_limits<double>::quiet_NaN();
            default: return static_cast<double>(next() % 100000) / 8.0;
        }
    }

private:
    uint64_t x_;
};

void check_peer_text(const std::string& raw, size_t limit, const std::string& safe) {
    FUZZ_CHECK(safe.size() <= limit, "peer_text() longer than its limit");
    for (char c : safe) FUZZ_CHECK(c >= 0x20 && c <= 0x7e, "peer_text() output outside printable ASCII");
    if (raw.size() * 4 <= limit) FUZZ_CHECK(safe.size() >= raw.size(), "peer_text() cut a text that fits");
}

void render_and_check(const StatusView& v, bool peer_strings_safe) {
    std::string text;
    try {
        text = psync::proxy::render_status_json(v);
    } catch (const std::exception&) {
        FUZZ_CHECK(false, "render_status_json threw");
    }
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception&) {
        FUZZ_CHECK(false, "GET /status is not valid JSON");
    }
    FUZZ_CHECK(j.is_object() && j["replicas"].is_array() && j["replicas"].size() == v.replicas.size(),
               "the /status document lost its shape");
    if (peer_strings_safe) {
        FUZZ_CHECK(j["upstream"]["last_error"] == v.upstream.last_error, "upstream.last_error not shown exactly");
        FUZZ_CHECK(j["upstream"]["version"] == v.upstream.version, "upstream.version not shown exactly");
        FUZZ_CHECK(j["upstream"]["replid"] == v.upstream.replid, "upstream.replid not shown exactly");
        FUZZ_CHECK(j["storage"]["last_error"] == v.storage.last_error, "storage.last_error not shown exactly");
        for (size_t i = 0; i < v.replicas.size(); ++i)
            FUZZ_CHECK(j["replicas"][i]["address"] == v.replicas[i].address, "a replica address not shown exactly");
    }

    const std::string metrics = psync::proxy::render_metrics_text(v);
    size_t start = 0;
    while (start < metrics.size()) {
        size_t nl = metrics.find('\n', start);
        FUZZ_CHECK(nl != std::string::npos, "the metrics text does not end in a newline");
        std::string_view line(metrics.data() + start, nl - start);
        FUZZ_CHECK(line.starts_with("# HELP psync_proxy_") || line.starts_with("# TYPE psync_proxy_") ||
                       line.starts_with("psync_proxy_"),
                   "a metrics line that is neither a comment nor a sample (a label value broke a line)");
        start = nl + 1;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    if (input.size() > 8192) input = input.substr(0, 8192);
    const std::vector<std::string> strings = pieces_of(input);
    size_t next_string = 0;
    Numbers num(psync::fuzz::hash_of(input));

    for (bool safe : {true, false}) {
        // Each string of the view from the next piece: through peer_text() (with the limit
        // the proxy uses for that field) when safe, raw otherwise.
        auto fill = [&](std::string& field, size_t limit) {
            const std::string& raw = strings[next_string++ % strings.size()];
            if (safe) {
                field = psync::protocol::peer_text(raw, limit);
                check_peer_text(raw, limit, field);
            } else {
                field = raw;
            }
        };
        StatusView v;
        fill(v.proxy.version, 64);
        fill(v.proxy.replid, 64);
        v.proxy.offset = num.next();
        v.proxy.uptime_seconds = num.seconds();
        v.proxy.pid = static_cast<int64_t>(num.next());
        fill(v.upstream.address, 256);
        fill(v.upstream.state, 64);
        v.upstream.link_up = num.next() & 1;
        fill(v.upstream.last_error, 1024);
        v.upstream.sync_count = num.next();
        v.upstream.rdb_bytes_received = num.next();
        if (num.next() & 1) v.upstream.rdb_bytes_expected = num.next();
        v.upstream.seconds_since_last_byte = num.seconds();
        fill(v.upstream.mode, 16);
        fill(v.upstream.version, 32);
        fill(v.upstream.replid, 64);
        if (num.next() & 1) v.upstream.offset = num.next();
        v.upstream.partial_resyncs = num.next();
        v.log.first_offset = num.next();
        v.log.last_offset = num.next();
        v.log.bytes_on_disk = num.next();
        v.log.segments = num.next();
        v.log.open_files = num.next();
        v.log.backlog_size_configured = num.next();
        v.log.refresh_enabled = num.next() & 1;
        fill(v.refresh.state, 16);
        fill(v.refresh.last_error, 1024);
        fill(v.refresh.last_trigger, 256);
        v.refresh.aligned = num.next() & 1;
        fill(v.storage.dir, 256);
        v.storage.ok = num.next() & 1;
        fill(v.storage.last_error, 1024);
        v.storage.last_error_unix = static_cast<int64_t>(num.next());
        if (num.next() & 1) {
            StatusView::SnapshotPart s;
            s.offset = num.next();
            s.bytes = num.next();
            fill(s.replid, 64);
            s.created_unix = static_cast<int64_t>(num.next());
            s.age_seconds = num.seconds();
            v.snapshot = std::move(s);
        }
        const size_t replicas = num.next() % 4;
        for (size_t i = 0; i < replicas; ++i) {
            StatusView::ReplicaPart r;
            fill(r.address, 64);
            fill(r.ip, 64);
            r.listening_port = static_cast<int>(num.next() % 70000) - 1000;
            fill(r.state, 16);
            r.past_handshake = num.next() & 1;
            fill(r.sync, 16);
            r.acked_offset = static_cast<int64_t>(num.next());
            r.sent_offset = num.next();
            r.lag_bytes = num.next();
            r.lag_seconds = num.seconds();
            if (num.next() & 1) r.bulk_bytes_sent = num.next();
            v.replicas.push_back(std::move(r));
        }
        v.counters.sync_full = num.next();
        v.counters.rejected_connections = num.next();
        render_and_check(v, safe);
    }
    return 0;
}
