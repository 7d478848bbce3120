// Load on an emulated Redis 2.6 master (tests/support/legacy_server.h), shared by the tests
// that run one: a fill, a writer thread, a description of its SYNCs, a keyspace compare.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/legacy_server.h"
#include "tests/support/redis_server.h"

namespace psync::test {

// Every key and value at most 20 bytes (2.6 would LZF-compress longer ones; the emulation
// does not). Integers of every RDB integer width, and keys that are integers themselves.
void fill(LegacyServer& m, const std::vector<int>& dbs, int keys);

// Writes from a thread: runs of 1 to 4 commands in one db, then the next db (so the stream
// has an inline `select` at most runs), about 2000 commands a second.
class LegacyLoad {
public:
    LegacyLoad(LegacyServer& master, std::vector<int> dbs);
    LegacyLoad(const LegacyLoad&) = delete;
    LegacyLoad& operator=(const LegacyLoad&) = delete;
    ~LegacyLoad() { stop(); }

    void stop();
    uint64_t rounds() const { return rounds_; }
    std::string error() const;
    void wait_more_rounds(uint64_t n, double timeout_s = 20);

private:
    void run();

    LegacyServer& master_;
    std::vector<int> dbs_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> rounds_{0};
    mutable std::mutex mutex_;
    std::string error_;
    std::thread thread_;
};

// What the master's SYNCs got, for messages.
std::string describe(LegacyServer& m);

// Polls until the replica's keyspace equals the master's in every db.
void wait_equal(LegacyServer& master, const RedisServer& replica, double timeout_s = 20);

}  // namespace psync::test
