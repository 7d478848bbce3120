// A minimal HTTP/1.1 GET client over a plain loopback socket ("Connection: close").
#pragma once

#include <string>

namespace psync::test {

struct HttpResponse {
    int status = 0;
    std::string headers;  // raw header block (without the status line)
    std::string body;     // de-chunked if the server used chunked encoding
};

// GET http://127.0.0.1:port<path>. Throws std::runtime_error on connection errors,
// timeouts and malformed responses.
HttpResponse http_get(int port, const std::string& path, double timeout_s = 5.0);

}  // namespace psync::test
