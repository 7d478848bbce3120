#include "tests/support/ports.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>

namespace psync::test {
namespace {

bool can_bind(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

int ephemeral_low() {
    std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
    int low = 32768, high = 60999;
    if (f >> low >> high) return low;
    return 32768;
}

}  // namespace

int pick_free_port() {
    static std::mutex mutex;
    static std::set<int> handed_out;
    static std::mt19937 rng{std::random_device{}()};
    std::lock_guard lock(mutex);

    int hi = ephemeral_low() - 1;
    int lo = 20000;
    if (hi - lo < 2000) {  // unusual ephemeral range: fall back to a range above it
        lo = 61000;
        hi = 65000;
    }
    std::uniform_int_distribution<int> dist(lo, hi);
    for (int attempt = 0; attempt < 500; ++attempt) {
        int port = dist(rng);
        if (handed_out.count(port)) continue;
        if (!can_bind(port)) continue;
        handed_out.insert(port);
        return port;
    }
    throw std::runtime_error("pick_free_port: no free port found");
}

int listen_on_loopback(const char* who, int backlog, int socket_flags, int& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | socket_flags, 0);
    if (fd < 0) throw std::runtime_error(std::string(who) + ": socket failed");
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, backlog) != 0) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(std::string(who) + ": bind/listen failed: " + std::strerror(err));
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    return fd;
}

}  // namespace psync::test
