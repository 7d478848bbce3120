#include "tests/support/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/support/test_context.h"

namespace psync::test {
namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

// Value of a header (case-insensitive name), "" if absent.
std::string header_value(const std::string& headers, const std::string& name) {
    const std::string lowered = lower(headers);
    const std::string key = "\r\n" + lower(name) + ":";
    size_t pos = ("\r\n" + lowered).find(key);
    if (pos == std::string::npos) return "";
    size_t start = pos + key.size() - 2;  // compensate for the "\r\n" prepended
    size_t end = headers.find("\r\n", start);
    std::string v = headers.substr(start, end == std::string::npos ? std::string::npos : end - start);
    size_t b = v.find_first_not_of(" \t");
    size_t e = v.find_last_not_of(" \t");
    return b == std::string::npos ? "" : v.substr(b, e - b + 1);
}

// Decodes a complete chunked body; returns false if incomplete.
bool dechunk(const std::string& raw, std::string& out) {
    out.clear();
    size_t pos = 0;
    while (true) {
        size_t eol = raw.find("\r\n", pos);
        if (eol == std::string::npos) return false;
        size_t len = std::stoul(raw.substr(pos, eol - pos), nullptr, 16);
        pos = eol + 2;
        if (len == 0) return true;
        if (raw.size() < pos + len + 2) return false;
        out.append(raw, pos, len);
        pos += len + 2;
    }
}

}  // namespace

HttpResponse http_get(int port, const std::string& path, double timeout_s) {
    const std::string where = "http://127.0.0.1:" + std::to_string(port) + path;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};

    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw std::runtime_error("GET " + where + ": connect: " + std::strerror(errno));

    const std::string request = "GET " + path +
                                " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                                "\r\nUser-Agent: psync-integration-tests\r\nAccept: */*\r\n"
                                "Connection: close\r\n\r\n";
    size_t sent = 0;
    while (sent < request.size()) {
        ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw std::runtime_error("GET " + where + ": send: " + std::strerror(errno));
        sent += static_cast<size_t>(n);
    }

    const auto start = Clock::now();
    std::string raw;
    HttpResponse resp;
    while (true) {
        // Complete already? (headers + Content-Length body, or a finished chunked body)
        size_t head_end = raw.find("\r\n\r\n");
        if (head_end != std::string::npos) {
            std::string head = raw.substr(0, head_end + 2);
            std::string body = raw.substr(head_end + 4);
            std::string length = header_value(head, "Content-Length");
            if (!length.empty() && body.size() >= std::stoul(length)) {
                resp.body = body.substr(0, std::stoul(length));
                break;
            }
            std::string decoded;
            if (lower(header_value(head, "Transfer-Encoding")) == "chunked" && dechunk(body, decoded)) {
                resp.body = decoded;
                break;
            }
        }
        double left = timeout_s - seconds_since(start);
        if (left <= 0) throw std::runtime_error("GET " + where + ": timed out; got " + std::to_string(raw.size()) + " bytes");
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char buf[16384];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error("GET " + where + ": recv: " + std::strerror(errno));
        if (n == 0) {  // connection closed: whatever follows the headers is the body
            size_t end = raw.find("\r\n\r\n");
            if (end == std::string::npos)
                throw std::runtime_error("GET " + where + ": connection closed before the end of the headers (" +
                                         std::to_string(raw.size()) + " bytes)");
            std::string head = raw.substr(0, end + 2);
            std::string body = raw.substr(end + 4);
            std::string decoded;
            if (lower(header_value(head, "Transfer-Encoding")) == "chunked") {
                if (!dechunk(body, decoded)) throw std::runtime_error("GET " + where + ": truncated chunked body");
                body = decoded;
            }
            std::string length = header_value(head, "Content-Length");
            if (!length.empty() && body.size() < std::stoul(length))
                throw std::runtime_error("GET " + where + ": body shorter than Content-Length");
            resp.body = body;
            break;
        }
        raw.append(buf, static_cast<size_t>(n));
    }

    size_t line_end = raw.find("\r\n");
    const std::string status_line = raw.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12)
        throw std::runtime_error("GET " + where + ": bad status line: " + status_line);
    resp.status = std::stoi(status_line.substr(9, 3));
    size_t head_end = raw.find("\r\n\r\n");
    resp.headers = raw.substr(line_end + 2, head_end - line_end);
    return resp;
}

}  // namespace psync::test
