// Fuzz target: the request parser (protocol/request_parser.h), everything a client of the
// replica port sends. Checks, for default limits and for small ones:
//  - no crash, no sanitizer report, no unbounded holding: buffered() stays within the limits;
//  - the commands and the error are the same however the input is cut into reads;
//  - an error is final, in Redis's words ("Protocol error: ..."), on one line.
#include <string>
#include <string_view>
#include <vector>

#include "protocol/request_parser.h"
#include "tests/fuzz/fuzz_util.h"

using psync::protocol::RequestLimits;
using psync::protocol::RequestParser;
using Result = RequestParser::Result;

namespace {

struct Parsed {
    std::vector<std::vector<std::string>> commands;
    std::string error;
    bool operator==(const Parsed&) const = default;
};

Parsed parse(std::string_view input, const std::vector<size_t>& sizes, const RequestLimits& limits) {
    RequestParser parser(limits);
    Parsed parsed;
    std::vector<std::string> args;
    size_t pos = 0;
    for (size_t n : sizes) {
        if (pos >= input.size()) break;
        parser.feed(input.substr(pos, n));
        pos += n;
        for (;;) {
            Result r = parser.next(args);
            if (r == Result::kNeedMore) break;
            if (r == Result::kError) {
                parsed.error = parser.error();
                FUZZ_CHECK(!parsed.error.empty(), "kError with an empty error()");
                FUZZ_CHECK(parsed.error.rfind("Protocol error: ", 0) == 0, parsed.error.c_str());
                FUZZ_CHECK(parsed.error.find_first_of("\r\n") == std::string::npos, "error message spans lines");
                FUZZ_CHECK(parser.next(args) == Result::kError && args.empty(), "an error is not final");
                return parsed;
            }
            FUZZ_CHECK(!args.empty(), "kCommand with no arguments");
            FUZZ_CHECK(args.size() <= limits.max_multibulk_count || args.size() * 2 <= limits.max_inline_len + 1,
                       "more arguments than the limits allow");
            parsed.commands.push_back(args);
        }
        // What the parser holds after kNeedMore is one incomplete request, within the limits.
        FUZZ_CHECK(parser.buffered() <= limits.max_buffered, "holds more than max_buffered after kNeedMore");
    }
    FUZZ_CHECK(pos == input.size(), "splits do not cover the input");
    return parsed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    RequestLimits small;
    small.max_inline_len = 40;
    small.max_multibulk_count = 5;
    small.max_bulk_len = 30;
    small.max_buffered = 100;
    for (const RequestLimits& limits : {RequestLimits{}, small}) {
        Parsed whole;
        bool first = true;
        for (const auto& sizes : psync::fuzz::splits_of(input)) {
            Parsed p = parse(input, sizes, limits);
            if (first) {
                whole = std::move(p);
                first = false;
                continue;
            }
            FUZZ_CHECK(p == whole, "the commands or the error depend on how the input is split");
        }
        for (const auto& cmd : whole.commands) {
            for (const auto& a : cmd) FUZZ_CHECK(a.size() <= limits.max_buffered, "an argument over max_buffered");
        }
    }
    return 0;
}
