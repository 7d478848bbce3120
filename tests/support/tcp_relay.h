// A TCP relay on loopback for fault injection between two peers (a replica and the proxy, or
// the proxy and its master): it forwards both directions from its own port to a target port,
// and the test can slow down the target-to-client direction to a small fixed rate (a slow
// replica: the relay reads from the target only that fast, with a small receive buffer, so
// the target's socket fills), cut every relayed connection with a reset (a broken link), and
// refuse new connections for a while (a peer that cannot be reached).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace psync::test {

class TcpRelay {
public:
    // Listens on 127.0.0.1 (kernel-chosen port) and relays every connection to
    // 127.0.0.1:target_port. Throws std::runtime_error if it cannot listen.
    explicit TcpRelay(int target_port);
    TcpRelay(const TcpRelay&) = delete;
    TcpRelay& operator=(const TcpRelay&) = delete;
    ~TcpRelay();  // closes everything, joins the thread

    int port() const { return port_; }

    // Bytes per second forwarded from the target to the client; 0 = as fast as possible.
    // Applies to open connections at once.
    void set_downstream_rate(uint64_t bytes_per_second);

    // Resets every relayed connection on both sides (SO_LINGER 0), as a broken link does.
    // Returns once done; returns how many connections were cut.
    int cut_all();

    // While set, new connections are accepted and reset at once (existing ones go on).
    void set_refuse(bool refuse);

    // Connections relayed right now, and since the start.
    int open_connections() const { return open_.load(); }
    int accepted_connections() const { return accepted_.load(); }
    // Bytes forwarded target -> client since the start.
    uint64_t downstream_bytes() const { return down_bytes_.load(); }

private:
    struct State;
    void run();

    int target_port_;
    int listen_fd_ = -1;
    int port_ = 0;
    int wake_[2] = {-1, -1};
    std::unique_ptr<State> state_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> rate_{0};
    std::atomic<bool> refuse_{false};
    std::atomic<int> open_{0};
    std::atomic<int> accepted_{0};
    std::atomic<uint64_t> down_bytes_{0};
    std::mutex cut_mutex_;
    std::atomic<uint64_t> cut_requested_{0};
    std::atomic<uint64_t> cut_done_{0};
    std::atomic<int> last_cut_count_{0};
    std::thread thread_;
};

}  // namespace psync::test
