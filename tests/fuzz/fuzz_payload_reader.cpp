// Fuzz target: the SYNC/PSYNC payload framing reader (protocol/payload_reader.h), what an
// upstream master sends between SYNC and the command stream. Checks:
//  - no crash, no sanitizer report;
//  - consumed never exceeds what was fed, and kNeedMore consumes everything;
//  - payload bytes delivered match payload_bytes(), never exceed a $<len> announcement, and
//    kDone with $<len> means exactly len bytes; no empty chunk; start/end events paired;
//  - the outcome (status, where it stopped, events, payload bytes, error, continue line) is
//    the same however the input is cut into reads;
//  - once finished, the reader stays finished until reset().
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/payload_reader.h"
#include "tests/fuzz/fuzz_util.h"

using psync::protocol::PayloadReader;
using psync::protocol::PayloadSink;
using Status = PayloadReader::Status;

namespace {

struct Sink : PayloadSink {
    std::vector<std::string> events;
    std::string data;
    std::optional<uint64_t> announced;
    bool started = false, ended = false;
    void on_keepalive() override {
        FUZZ_CHECK(!started, "a keepalive inside the payload");
        events.push_back("keepalive");
    }
    void on_status_line(std::string_view line) override {
        FUZZ_CHECK(!started, "a status line inside the payload");
        FUZZ_CHECK(line.size() <= PayloadReader::kMaxLine, "a status line over kMaxLine");
        events.push_back("status " + std::string(line));
    }
    void on_payload_start(std::optional<uint64_t> len) override {
        FUZZ_CHECK(!started, "two payload starts");
        started = true;
        announced = len;
        events.push_back(len ? "start " + std::to_string(*len) : "start eof");
    }
    void on_payload_data(std::string_view chunk) override {
        FUZZ_CHECK(started && !ended, "payload data outside the payload");
        FUZZ_CHECK(!chunk.empty(), "an empty payload chunk");
        data.append(chunk);
        if (announced) FUZZ_CHECK(data.size() <= *announced, "more payload bytes than announced");
    }
    void on_payload_end() override {
        FUZZ_CHECK(started && !ended, "payload end without start, or twice");
        ended = true;
        events.push_back("end");
    }
};

struct Outcome {
    Status status = Status::kNeedMore;
    size_t stop = 0;
    std::vector<std::string> events;
    std::string data, error, continue_line;
    bool error_is_reply = false;
    bool operator==(const Outcome&) const = default;
};

Outcome read(std::string_view input, const std::vector<size_t>& sizes) {
    PayloadReader reader;
    Sink sink;
    Outcome out;
    size_t pos = 0;
    for (size_t n : sizes) {
        if (pos >= input.size()) break;
        size_t consumed = static_cast<size_t>(-1);
        out.status = reader.feed(input.substr(pos, n), consumed, sink);
        FUZZ_CHECK(consumed <= n, "consumed more than fed");
        if (out.status == Status::kNeedMore) FUZZ_CHECK(consumed == n, "kNeedMore without consuming everything");
        pos += consumed;
        if (out.status != Status::kNeedMore) break;
    }
    out.stop = pos;
    out.events = sink.events;
    out.data = sink.data;
    out.error = reader.error();
    out.error_is_reply = reader.error_is_reply();
    out.continue_line = reader.continue_line();
    FUZZ_CHECK(reader.payload_bytes() == sink.data.size(), "payload_bytes() differs from the bytes delivered");
    switch (out.status) {
        case Status::kDone:
            FUZZ_CHECK(sink.started && sink.ended, "kDone without a whole payload");
            if (sink.announced) FUZZ_CHECK(sink.data.size() == *sink.announced, "kDone with fewer bytes than announced");
            FUZZ_CHECK(out.error.empty(), "kDone with an error");
            break;
        case Status::kError:
            // The master's own "-" line may be empty ("-\r\n"): error() is then its empty text.
            // A framing error always says what was wrong.
            FUZZ_CHECK(out.error_is_reply || !out.error.empty(), "a framing error without a message");
            FUZZ_CHECK(!sink.ended, "kError after the payload ended");
            break;
        case Status::kContinue:
            FUZZ_CHECK(!sink.started, "kContinue after a payload started");
            FUZZ_CHECK(out.continue_line.rfind("CONTINUE", 0) == 0, "continue line does not start with CONTINUE");
            break;
        case Status::kNeedMore:
            FUZZ_CHECK(!sink.ended, "payload ended but kNeedMore");
            FUZZ_CHECK(out.stop == input.size(), "kNeedMore before the end of the input");
            break;
    }
    if (out.status != Status::kNeedMore) {
        // Finished: stays so until reset(), consuming nothing and calling nothing.
        size_t consumed = 99;
        const size_t events_before = sink.events.size(), data_before = sink.data.size();
        Status again = reader.feed("$3\r\nabc", consumed, sink);
        FUZZ_CHECK(again == out.status && consumed == 0 && sink.events.size() == events_before &&
                       sink.data.size() == data_before,
                   "a finished reader took more input");
        reader.reset();
        Sink fresh;
        Status st = reader.feed("\n$3\r\nabc*1\r\n", consumed, fresh);
        FUZZ_CHECK(st == Status::kDone && consumed == 8 && fresh.data == "abc", "reset() does not restart the reader");
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto splits = psync::fuzz::splits_of(input);
    const Outcome whole = read(input, splits[0]);
    for (size_t i = 1; i < splits.size(); ++i) {
        FUZZ_CHECK(read(input, splits[i]) == whole, "the outcome depends on how the input is split");
    }
    return 0;
}
