#include "tests/support/scripted_replica.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/support/test_context.h"

namespace psync::test {
namespace {

std::string printable(std::string_view s, size_t max = 120) {
    std::string out;
    for (unsigned char c : s.substr(0, max)) {
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

// Reads a "<prefix><decimal>\r\n" line at pos; returns false if incomplete; throws if malformed.
bool read_number_line(std::string_view b, size_t& pos, char prefix, long long& value, uint64_t at) {
    if (pos >= b.size()) return false;
    if (b[pos] != prefix)
        throw std::runtime_error("stream byte at offset " + std::to_string(at) + ": expected '" +
                                 std::string(1, prefix) + "', got: " + printable(b.substr(pos)));
    size_t eol = b.find("\r\n", pos);
    if (eol == std::string_view::npos) {
        if (b.size() - pos > 32) throw std::runtime_error("stream: length line too long at offset " + std::to_string(at));
        return false;
    }
    std::string digits(b.substr(pos + 1, eol - pos - 1));
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
        throw std::runtime_error("stream: bad length line at offset " + std::to_string(at) + ": " +
                                 printable(b.substr(pos, eol - pos)));
    value = std::stoll(digits);
    pos = eol + 2;
    return true;
}

}  // namespace

std::vector<StreamCommand> parse_stream(std::string_view bytes, uint64_t first_offset, size_t* consumed) {
    std::vector<StreamCommand> out;
    size_t pos = 0;
    while (pos < bytes.size()) {
        const size_t start = pos;
        const uint64_t at = first_offset + start;
        long long argc = 0;
        if (!read_number_line(bytes, pos, '*', argc, at)) break;
        if (argc <= 0) throw std::runtime_error("stream: empty multibulk at offset " + std::to_string(at));
        StreamCommand cmd;
        cmd.offset = at;
        bool complete = true;
        for (long long i = 0; i < argc; ++i) {
            long long len = 0;
            if (!read_number_line(bytes, pos, '$', len, first_offset + pos)) {
                complete = false;
                break;
            }
            if (bytes.size() < pos + static_cast<size_t>(len) + 2) {
                complete = false;
                break;
            }
            if (bytes.substr(pos + static_cast<size_t>(len), 2) != "\r\n")
                throw std::runtime_error("stream: bulk not followed by CRLF at offset " +
                                         std::to_string(first_offset + pos + static_cast<size_t>(len)));
            cmd.args.emplace_back(bytes.substr(pos, static_cast<size_t>(len)));
            pos += static_cast<size_t>(len) + 2;
        }
        if (!complete) {
            pos = start;
            break;
        }
        cmd.length = pos - start;
        out.push_back(std::move(cmd));
    }
    if (consumed) *consumed = pos;
    return out;
}

std::vector<std::pair<int, Command>> stream_writes(const std::vector<StreamCommand>& commands, int start_db) {
    std::vector<std::pair<int, Command>> out;
    int db = start_db;
    for (const auto& c : commands) {
        const std::string name = upper(c.args.at(0));
        if (name == "SELECT" && c.args.size() == 2) {
            db = std::stoi(c.args[1]);
        } else if (name != "PING" && name != "REPLCONF") {
            out.emplace_back(db, c.args);
        }
    }
    return out;
}

std::string describe_writes(const std::vector<std::pair<int, Command>>& writes, size_t max_items) {
    std::string out;
    for (size_t i = 0; i < writes.size() && i < max_items; ++i) {
        out += "\n    db" + std::to_string(writes[i].first) + ":";
        for (const auto& a : writes[i].second) out += " " + printable(a, 40);
    }
    if (writes.size() > max_items) out += "\n    ... (" + std::to_string(writes.size()) + " writes)";
    return out.empty() ? "(none)" : out;
}

ScriptedReplica::ScriptedReplica(int port, int rcvbuf) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("scripted replica: socket failed");
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        int e = errno;
        ::close(fd_);
        fd_ = -1;
        throw std::runtime_error("scripted replica: connect to 127.0.0.1:" + std::to_string(port) + ": " +
                                 std::strerror(e));
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in local{};
    socklen_t len = sizeof local;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &len);
    local_port_ = ntohs(local.sin_port);
}

ScriptedReplica::~ScriptedReplica() { close(); }

void ScriptedReplica::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void ScriptedReplica::send(std::string_view bytes) {
    if (fd_ < 0) throw std::runtime_error("scripted replica: send on a closed connection");
    size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw std::runtime_error(std::string("scripted replica: send failed: ") + std::strerror(errno));
        sent += static_cast<size_t>(n);
    }
}

bool ScriptedReplica::fill(double timeout_s) {
    if (fd_ < 0 || eof_) return false;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, std::max(0, static_cast<int>(timeout_s * 1000)));
    if (r <= 0) return false;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        eof_ = true;
        return false;
    }
    if (n < 0) return false;
    if (streaming_) stream_.append(buf, static_cast<size_t>(n));
    else in_.append(buf, static_cast<size_t>(n));
    return true;
}

std::string ScriptedReplica::read_line(double timeout_s) {
    const auto start = Clock::now();
    while (true) {
        while (!in_.empty() && in_[0] == '\n') {
            in_.erase(0, 1);
            ++keepalives_;
        }
        size_t eol = in_.find("\r\n");
        if (eol != std::string::npos) {
            std::string line = in_.substr(0, eol);
            in_.erase(0, eol + 2);
            return line;
        }
        double left = timeout_s - seconds_since(start);
        if (eof_) throw std::runtime_error("scripted replica: connection closed; buffered: " + printable(in_));
        if (left <= 0)
            throw std::runtime_error("scripted replica: no reply line within " + std::to_string(timeout_s) +
                                     " s; buffered: " + printable(in_));
        fill(left);
    }
}

std::string ScriptedReplica::read_exact(size_t n, double timeout_s) {
    const auto start = Clock::now();
    while (in_.size() < n) {
        double left = timeout_s - seconds_since(start);
        if (eof_ || left <= 0)
            throw std::runtime_error("scripted replica: " + std::to_string(in_.size()) + " of " + std::to_string(n) +
                                     " bytes received" + (eof_ ? " before the connection closed" : " in time"));
        fill(left);
    }
    std::string out = in_.substr(0, n);
    in_.erase(0, n);
    return out;
}

std::string ScriptedReplica::read_payload(double timeout_s) {
    std::string line = read_line(timeout_s);
    if (line.empty() || line[0] != '$' || line.size() < 2 ||
        line.find_first_not_of("0123456789", 1) != std::string::npos)
        throw std::runtime_error("scripted replica: expected $<len>, got: " + printable(line));
    return read_exact(std::stoull(line.substr(1)), timeout_s);
}

std::string ScriptedReplica::read_for(double wait_s) {
    const auto start = Clock::now();
    while (true) {
        double left = wait_s - seconds_since(start);
        if (left <= 0 || eof_) break;
        fill(left);
    }
    return streaming_ ? stream_ : in_;
}

std::string ScriptedReplica::take_buffered() { return std::exchange(in_, std::string()); }

bool ScriptedReplica::wait_closed(double timeout_s) {
    const auto start = Clock::now();
    while (!eof_) {
        double left = timeout_s - seconds_since(start);
        if (left <= 0) return false;
        fill(left);
    }
    return true;
}

void ScriptedReplica::begin_stream(uint64_t first_offset) {
    streaming_ = true;
    stream_first_ = first_offset;
    stream_ = std::exchange(in_, std::string());
}

void ScriptedReplica::read_stream_until(uint64_t offset, double timeout_s) {
    const auto start = Clock::now();
    while (stream_first_ + stream_.size() < offset + 1) {
        double left = timeout_s - seconds_since(start);
        if (eof_ || left <= 0) {
            FAIL("scripted replica: the stream reached offset " << stream_end() << ", expected " << offset
                                                                << (eof_ ? " (connection closed)" : "")
                                                                << "; tail: " << printable(stream_.substr(stream_.size() > 200 ? stream_.size() - 200 : 0), 200));
        }
        fill(left);
    }
}

void ScriptedReplica::read_stream_while(const std::string& what, double timeout_s,
                                        const std::function<bool(const std::vector<StreamCommand>&)>& done) {
    const auto start = Clock::now();
    while (true) {
        if (done(stream_commands())) return;
        double left = timeout_s - seconds_since(start);
        if (eof_ || left <= 0) {
            FAIL("scripted replica: timed out waiting for " << what << (eof_ ? " (connection closed)" : "")
                                                            << "; received:" << describe_writes(stream_writes(stream_commands()), 40));
        }
        fill(std::min(left, 0.2));
    }
}

std::vector<StreamCommand> ScriptedReplica::stream_commands() const { return parse_stream(stream_, stream_first_); }

}  // namespace psync::test
