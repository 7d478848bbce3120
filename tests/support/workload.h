// Data sets and write loads applied to a master.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/redis_client.h"

namespace psync::test {

// Writes `keys` keys named <prefix>:<type>:<i> into `db`: strings, hashes, lists, sets,
// sorted sets (fractional scores too), and strings and hashes with long TTLs (1-2 hours).
void fill_dataset(RedisClient& client, int db, int keys, const std::string& prefix = "k");

// One burst of further writes in each db: SET, INCR, LPUSH, HSET, SADD, ZADD, EXPIRE, DEL of
// keys written by fill_dataset, and a MULTI/EXEC block. `round` makes each burst distinct.
void write_burst(RedisClient& client, const std::vector<int>& dbs, int round, const std::string& prefix = "k");

// Writes continuously to a server from a background thread (SET/INCR/LPUSH/HSET/ZADD rotating
// over `dbs`), until stop() or destruction. Errors stop the thread and are kept for the test.
class BackgroundWriter {
public:
    BackgroundWriter(int port, std::vector<int> dbs, std::string prefix = "bg");
    BackgroundWriter(const BackgroundWriter&) = delete;
    BackgroundWriter& operator=(const BackgroundWriter&) = delete;
    ~BackgroundWriter();

    void stop();                       // joins the thread
    uint64_t rounds() const { return rounds_; }  // completed write rounds
    std::string error() const;         // "" if none

    // Waits until `n` more rounds are completed than when called (FAILs after timeout_s).
    void wait_more_rounds(uint64_t n, double timeout_s = 30);

private:
    void run();

    int port_;
    std::vector<int> dbs_;
    std::string prefix_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> rounds_{0};
    mutable std::mutex mutex_;
    std::string error_;
    std::thread thread_;
};

}  // namespace psync::test
