#include "tests/support/scripted_master.h"

#include "tests/support/ports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "tests/support/test_context.h"

namespace psync::test {
namespace {

// Parses one command from the front of buf. Returns true and sets `consumed` when a full
// command (or a bare empty line, giving an empty `out`) is available.
bool parse_command(const std::string& buf, Command& out, size_t& consumed) {
    out.clear();
    if (buf.empty()) return false;
    if (buf[0] != '*') {  // inline: one line, space separated
        size_t eol = buf.find('\n');
        if (eol == std::string::npos) return false;
        std::string line = buf.substr(0, eol);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        size_t pos = 0;
        while (pos < line.size()) {
            size_t next = line.find(' ', pos);
            if (next == std::string::npos) next = line.size();
            if (next > pos) out.push_back(line.substr(pos, next - pos));
            pos = next + 1;
        }
        consumed = eol + 1;
        return true;
    }
    size_t pos = buf.find("\r\n");
    if (pos == std::string::npos) return false;
    long n = std::stol(buf.substr(1, pos - 1));
    pos += 2;
    for (long i = 0; i < n; ++i) {
        size_t eol = buf.find("\r\n", pos);
        if (eol == std::string::npos) return false;
        if (buf[pos] != '$') throw std::runtime_error("scripted master: bad multibulk from client: " + buf.substr(0, 80));
        size_t len = std::stoul(buf.substr(pos + 1, eol - pos - 1));
        pos = eol + 2;
        if (buf.size() < pos + len + 2) return false;
        out.push_back(buf.substr(pos, len));
        pos += len + 2;
    }
    consumed = pos;
    return true;
}

}  // namespace

std::string multibulk(const Command& args) {
    // append() only: GCC 12 at -O2 reports a false -Wrestrict on "literal" + std::string.
    std::string out;
    out.append("*").append(std::to_string(args.size())).append("\r\n");
    for (const auto& a : args) out.append("$").append(std::to_string(a.size())).append("\r\n").append(a).append("\r\n");
    return out;
}

std::optional<std::string> redis26_reply(const Command& cmd) {
    if (cmd.empty()) return std::nullopt;
    const std::string name = upper(cmd[0]);
    if (name == "PING") return "+PONG\r\n";
    if (name == "AUTH") return "+OK\r\n";
    if (name == "SYNC") return std::nullopt;
    if (name == "INFO") {
        const std::string info = "# Server\r\nredis_version:2.6.17\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n";
        return std::string("$").append(std::to_string(info.size())).append("\r\n").append(info).append("\r\n");
    }
    if (name == "REPLCONF") {
        if (cmd.size() >= 2 && upper(cmd[1]) == "LISTENING-PORT") return "+OK\r\n";
        return "-ERR Unrecognized REPLCONF option: " + (cmd.size() >= 2 ? cmd[1] : std::string()) + "\r\n";
    }
    return "-ERR unknown command '" + cmd[0] + "'\r\n";
}

ScriptedMaster::ScriptedMaster() {
    listen_fd_ = listen_on_loopback("scripted master", 16, 0, port_);
}

ScriptedMaster::~ScriptedMaster() {
    close_client();
    if (listen_fd_ >= 0) ::close(listen_fd_);
}

void ScriptedMaster::accept_client(double timeout_s) {
    close_client();
    pollfd p{listen_fd_, POLLIN, 0};
    const auto start = Clock::now();
    while (true) {
        double left = timeout_s - seconds_since(start);
        if (left <= 0)
            throw std::runtime_error("scripted master (port " + std::to_string(port_) + "): no connection within " +
                                     std::to_string(timeout_s) + " s");
        int r = ::poll(&p, 1, static_cast<int>(left * 1000) + 1);
        if (r > 0) break;
        if (r < 0 && errno != EINTR) throw std::runtime_error("scripted master: poll failed");
    }
    client_fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client_fd_ < 0) throw std::runtime_error(std::string("scripted master: accept: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(client_fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};  // a send never blocks longer than this
    ::setsockopt(client_fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    in_.clear();
    client_eof_ = false;
}

bool ScriptedMaster::fill(double timeout_s) {
    if (client_fd_ < 0) throw std::runtime_error("scripted master: no client connected");
    if (client_eof_) throw std::runtime_error("scripted master: the client closed the connection");
    pollfd p{client_fd_, POLLIN, 0};
    int r = ::poll(&p, 1, std::max(0, static_cast<int>(timeout_s * 1000)));
    if (r <= 0) return false;
    char buf[16384];
    ssize_t n = ::recv(client_fd_, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        client_eof_ = true;
        throw std::runtime_error("scripted master: the client closed the connection");
    }
    if (n < 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
}

Command ScriptedMaster::read_command(double timeout_s) {
    const auto start = Clock::now();
    while (true) {
        Command cmd;
        size_t consumed = 0;
        while (parse_command(in_, cmd, consumed)) {
            in_.erase(0, consumed);
            if (!cmd.empty()) return cmd;
        }
        double left = timeout_s - seconds_since(start);
        if (left <= 0)
            throw std::runtime_error("scripted master: no complete command within " + std::to_string(timeout_s) +
                                     " s; buffered: " + in_.substr(0, 100));
        fill(left);
    }
}

std::vector<Command> ScriptedMaster::serve_until_sync(double timeout_s, const LegacyReplier& replier) {
    std::vector<Command> received;
    const auto start = Clock::now();
    while (true) {
        double left = timeout_s - seconds_since(start);
        if (left <= 0) throw std::runtime_error("scripted master: no SYNC within " + std::to_string(timeout_s) + " s");
        Command cmd = read_command(left);
        received.push_back(cmd);
        if (upper(cmd[0]) == "SYNC") return received;
        if (auto reply = replier(cmd)) send(*reply);
    }
}

void ScriptedMaster::send(std::string_view bytes) {
    if (client_fd_ < 0) throw std::runtime_error("scripted master: send without a client");
    size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t n = ::send(client_fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw std::runtime_error(std::string("scripted master: send failed: ") + std::strerror(errno));
        sent += static_cast<size_t>(n);
    }
}

void ScriptedMaster::send_chunked(std::string_view bytes, size_t chunk, int pause_ms) {
    for (size_t pos = 0; pos < bytes.size(); pos += chunk) {
        send(bytes.substr(pos, chunk));
        if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    }
}

void ScriptedMaster::send_payload(const std::string& rdb, int keepalives, const std::string& stream_head) {
    for (int i = 0; i < keepalives; ++i) send("\n");
    std::string bytes;
    bytes.append("$").append(std::to_string(rdb.size())).append("\r\n").append(rdb).append(stream_head);
    send(bytes);
}

std::string ScriptedMaster::received_bytes(double wait_s) {
    const auto start = Clock::now();
    try {
        while (true) {
            double left = wait_s - seconds_since(start);
            if (left <= 0) break;
            fill(left);
        }
    } catch (const std::runtime_error&) {
        // closed: return what we have
    }
    return in_;
}

bool ScriptedMaster::wait_client_closed(double timeout_s) {
    const auto start = Clock::now();
    try {
        while (seconds_since(start) < timeout_s) fill(timeout_s - seconds_since(start));
    } catch (const std::runtime_error&) {
        return true;
    }
    return false;
}

void ScriptedMaster::close_client() {
    if (client_fd_ >= 0) ::close(client_fd_);
    client_fd_ = -1;
}

void LegacyStream::command(const Command& args) {
    if (db_ != stream_db_) {
        bytes_ += "select " + std::to_string(db_) + "\r\n";
        stream_db_ = db_;
    }
    bytes_ += multibulk(args);
    writes_.emplace_back(db_, args);
}

void apply_writes(RedisClient& client, const std::vector<std::pair<int, Command>>& writes) {
    int current = -1;
    std::vector<Command> batch;
    for (const auto& [db, cmd] : writes) {
        if (db != current) {
            batch.push_back({"SELECT", std::to_string(db)});
            current = db;
        }
        batch.push_back(cmd);
    }
    client.must_pipeline(batch);
}

}  // namespace psync::test
