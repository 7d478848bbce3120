#include "tests/support/tcp_relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/support/test_context.h"

namespace psync::test {
namespace {

constexpr size_t kBufferCap = 64 * 1024;  // bytes held per direction
constexpr int kSlowRcvBuf = 8 * 1024;      // target-side receive buffer of a rate-limited relay

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void reset_close(int fd) {
    if (fd < 0) return;
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
}

struct Pair {
    int client = -1;
    int target = -1;
    std::string up;    // client -> target, not yet written
    std::string down;  // target -> client, not yet written
    bool dead = false;
};

}  // namespace

struct TcpRelay::State {
    std::list<Pair> pairs;
};

TcpRelay::TcpRelay(int target_port) : target_port_(target_port), state_(std::make_unique<State>()) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd_ < 0) throw std::runtime_error("relay: socket failed");
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0) {
        ::close(listen_fd_);
        throw std::runtime_error(std::string("relay: bind/listen failed: ") + std::strerror(errno));
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
        ::close(listen_fd_);
        throw std::runtime_error("relay: pipe failed");
    }
    thread_ = std::thread([this] { run(); });
}

TcpRelay::~TcpRelay() {
    stop_ = true;
    char c = 's';
    ssize_t ignored = ::write(wake_[1], &c, 1);
    (void)ignored;
    if (thread_.joinable()) thread_.join();
    for (auto& p : state_->pairs) {
        if (p.client >= 0) ::close(p.client);
        if (p.target >= 0) ::close(p.target);
    }
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
}

void TcpRelay::set_downstream_rate(uint64_t bytes_per_second) {
    rate_ = bytes_per_second;
    char c = 'r';
    ssize_t ignored = ::write(wake_[1], &c, 1);
    (void)ignored;
}

void TcpRelay::set_refuse(bool refuse) { refuse_ = refuse; }

int TcpRelay::cut_all() {
    std::lock_guard lock(cut_mutex_);
    const uint64_t ticket = ++cut_requested_;
    char c = 'c';
    ssize_t ignored = ::write(wake_[1], &c, 1);
    (void)ignored;
    wait_until("the relay to cut its connections", 5, [&] { return cut_done_.load() >= ticket; });
    return last_cut_count_.load();
}

void TcpRelay::run() {
    using Clock = std::chrono::steady_clock;
    double tokens = 0;  // bytes the downstream direction may still read (rate-limited)
    auto last_refill = Clock::now();
    while (!stop_) {
        const uint64_t rate = rate_.load();
        const auto now = Clock::now();
        if (rate > 0) {
            tokens += std::chrono::duration<double>(now - last_refill).count() * static_cast<double>(rate);
            // At most 1/20 s worth of burst (and at least a small read) at once.
            tokens = std::min(tokens, std::max(static_cast<double>(rate) / 20.0, 512.0));
        }
        last_refill = now;

        // Cut requests.
        if (cut_done_.load() < cut_requested_.load()) {
            int n = 0;
            for (auto& p : state_->pairs) {
                if (p.dead) continue;
                reset_close(p.client);
                reset_close(p.target);
                p.client = p.target = -1;
                p.dead = true;
                ++n;
            }
            last_cut_count_ = n;
            cut_done_ = cut_requested_.load();
        }
        state_->pairs.remove_if([](const Pair& p) { return p.dead; });
        open_ = static_cast<int>(state_->pairs.size());

        std::vector<pollfd> fds;
        fds.push_back({wake_[0], POLLIN, 0});
        fds.push_back({listen_fd_, POLLIN, 0});
        bool throttled = false;
        for (auto& p : state_->pairs) {
            short ce = 0, te = 0;
            if (p.up.size() < kBufferCap) ce |= POLLIN;
            if (!p.down.empty()) ce |= POLLOUT;
            if (!p.up.empty()) te |= POLLOUT;
            if (p.down.size() < kBufferCap) {
                if (rate == 0 || tokens >= 1) te |= POLLIN;
                else throttled = true;
            }
            fds.push_back({p.client, ce, 0});
            fds.push_back({p.target, te, 0});
        }
        int r = ::poll(fds.data(), fds.size(), throttled ? 5 : 200);
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) continue;
        if (fds[0].revents) {
            char buf[64];
            while (::read(wake_[0], buf, sizeof buf) > 0) {
            }
        }
        if (fds[1].revents & POLLIN) {
            for (;;) {
                int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (c < 0) break;
                ++accepted_;
                if (refuse_) {
                    reset_close(c);
                    continue;
                }
                int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (rate_.load() > 0) ::setsockopt(t, SOL_SOCKET, SO_RCVBUF, &kSlowRcvBuf, sizeof kSlowRcvBuf);
                sockaddr_in addr{};
                addr.sin_family = AF_INET;
                addr.sin_port = htons(static_cast<uint16_t>(target_port_));
                addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (::connect(t, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
                    ::close(t);
                    reset_close(c);
                    continue;
                }
                set_nonblocking(t);
                int one = 1;
                ::setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                Pair p;
                p.client = c;
                p.target = t;
                state_->pairs.push_back(std::move(p));
            }
        }
        size_t i = 2;
        char buf[16384];
        for (auto& p : state_->pairs) {
            if (i + 1 >= fds.size()) break;
            const pollfd& cf = fds[i++];
            const pollfd& tf = fds[i++];
            auto pump_in = [&](int fd, std::string& into, size_t max) {
                if (max == 0) return true;
                ssize_t n = ::read(fd, buf, std::min(sizeof buf, max));
                if (n > 0) {
                    into.append(buf, static_cast<size_t>(n));
                    return true;
                }
                return n < 0 && (errno == EAGAIN || errno == EINTR);
            };
            auto pump_out = [&](int fd, std::string& from) {
                ssize_t n = ::send(fd, from.data(), from.size(), MSG_NOSIGNAL);
                if (n > 0) {
                    from.erase(0, static_cast<size_t>(n));
                    return true;
                }
                return n < 0 && (errno == EAGAIN || errno == EINTR);
            };
            bool ok = true;
            if (cf.revents & (POLLIN | POLLHUP | POLLERR)) ok = ok && pump_in(p.client, p.up, kBufferCap - p.up.size());
            if (ok && (tf.revents & (POLLIN | POLLHUP | POLLERR)) && (rate == 0 || tokens >= 1)) {
                size_t max = kBufferCap - p.down.size();
                if (rate > 0) max = std::min(max, static_cast<size_t>(tokens));
                const size_t before = p.down.size();
                ok = pump_in(p.target, p.down, max);
                const size_t got = p.down.size() - before;
                if (rate > 0) tokens -= static_cast<double>(got);
                down_bytes_ += got;
            }
            if (ok && !p.up.empty()) ok = pump_out(p.target, p.up);
            if (ok && !p.down.empty()) ok = pump_out(p.client, p.down);
            if (!ok) {
                // One side closed or failed: close both (what was held is dropped, as a
                // broken link drops it).
                ::close(p.client);
                ::close(p.target);
                p.client = p.target = -1;
                p.dead = true;
            }
        }
    }
}

}  // namespace psync::test
