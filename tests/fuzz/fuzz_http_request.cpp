// Fuzz target: the status endpoint's request handling (proxy/status_http.h): what anyone who
// can reach the status port sends. The server re-parses everything received so far after each
// read and answers once a request is complete or broken, so every prefix is parsed too.
// Checks: no crash, no sanitizer report; `complete` and `error` never both set; a complete
// request has a method; respond() always builds a well-formed HTTP/1.1 response whose
// Content-Length is the size of its body (none for HEAD), with a JSON error body or "ok".
#include <string>
#include <string_view>

#include "proxy/status_http.h"
#include "tests/fuzz/fuzz_util.h"

using psync::proxy::HttpRequest;
using psync::proxy::parse_http_request;
using psync::proxy::StatusServer;

namespace {

void check_response(const std::string& method, const std::string& url) {
    const std::string r = StatusServer::respond(nullptr, method, url);
    FUZZ_CHECK(r.rfind("HTTP/1.1 ", 0) == 0, "the response has no HTTP/1.1 status line");
    const size_t head_end = r.find("\r\n\r\n");
    FUZZ_CHECK(head_end != std::string::npos, "the response has no end of headers");
    const std::string head = r.substr(0, head_end);
    const std::string body = r.substr(head_end + 4);
    const size_t cl = head.find("\r\nContent-Length: ");
    FUZZ_CHECK(cl != std::string::npos, "the response has no Content-Length");
    const size_t len = std::stoul(head.substr(cl + 18, head.find("\r\n", cl + 2) - cl - 18));
    FUZZ_CHECK(head.find('\n', 0) == head.find("\r\n") + 1, "a bare LF in the status line");
    const int code = std::stoi(r.substr(9, 3));
    FUZZ_CHECK(code == 200 || code == 404 || code == 405 || code == 503, "unexpected status code");
    if (method == "HEAD") {
        FUZZ_CHECK(body.empty(), "a body in the answer to HEAD");
    } else {
        FUZZ_CHECK(body.size() == len, "Content-Length differs from the body's size");
    }
}

void check_request(std::string_view bytes) {
    const HttpRequest req = parse_http_request(bytes);
    FUZZ_CHECK(!(req.complete && !req.error.empty()), "a request both complete and in error");
    if (req.complete) {
        FUZZ_CHECK(!req.method.empty(), "a complete request without a method");
        check_response(req.method, req.url);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    if (input.size() > psync::proxy::kMaxHttpRequest) input = input.substr(0, psync::proxy::kMaxHttpRequest);
    // As the server sees it: the bytes received after each read, read in the same pieces.
    size_t pos = 0;
    for (size_t n : psync::fuzz::random_pieces(psync::fuzz::hash_of(input), input.size(), 200)) {
        pos += n;
        check_request(input.substr(0, pos));
    }
    check_request(input);
    // respond() with whatever the first line carries, even what the parser would refuse.
    const size_t sp = input.find(' ');
    if (sp != std::string_view::npos) {
        check_response(std::string(input.substr(0, sp)), std::string(input.substr(sp + 1, 300)));
    }
    return 0;
}
