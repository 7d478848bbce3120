#include "tests/support/workload.h"

#include "tests/support/test_context.h"

namespace psync::test {

void fill_dataset(RedisClient& client, int db, int keys, const std::string& prefix) {
    std::vector<Command> cmds = {{"SELECT", std::to_string(db)}};
    const std::string p = prefix + ":" + std::to_string(db) + ":";
    for (int i = 0; i < keys; ++i) {
        const std::string n = std::to_string(i);
        switch (i % 7) {
            case 0: cmds.push_back({"SET", p + "str:" + n, "value-" + n + std::string(i % 50, 'x')}); break;
            case 1: cmds.push_back({"HSET", p + "hash:" + n, "f1", "a" + n, "f2", "b", "f3", "", "num", n}); break;
            case 2: cmds.push_back({"RPUSH", p + "list:" + n, "x", n, "y", "x", "z\r\nwith crlf"}); break;
            case 3: cmds.push_back({"SADD", p + "set:" + n, "m1", "m2", n, "space in member"}); break;
            case 4: cmds.push_back({"ZADD", p + "zset:" + n, "1", "one", "2.5", "two.five", "-3", n, "1e3", "big"}); break;
            case 5: cmds.push_back({"SET", p + "ttl:" + n, "expiring-" + n, "EX", std::to_string(3600 + i)}); break;
            case 6:
                cmds.push_back({"HSET", p + "hashttl:" + n, "a", "1", "b", "2"});
                cmds.push_back({"PEXPIRE", p + "hashttl:" + n, std::to_string(7200000 + i)});
                break;
        }
    }
    cmds.push_back({"SET", p + "counter", "0"});
    cmds.push_back({"SET", p + "binary", std::string("\x00\x01\xff\r\n bin", 9)});
    client.must_pipeline(cmds);
}

void write_burst(RedisClient& client, const std::vector<int>& dbs, int round, const std::string& prefix) {
    const std::string r = std::to_string(round);
    for (int db : dbs) {
        const std::string p = prefix + ":" + std::to_string(db) + ":";
        std::vector<Command> cmds = {{"SELECT", std::to_string(db)}};
        for (int i = 0; i < 20; ++i) {
            const std::string n = std::to_string(i);
            cmds.push_back({"SET", p + "burst:" + r + ":" + n, "b" + r + "-" + n});
            cmds.push_back({"INCR", p + "counter"});
        }
        cmds.push_back({"LPUSH", p + "list:2", "pushed-" + r, "again-" + r});
        cmds.push_back({"LPUSH", p + "newlist:" + r, "a", "b", "c"});
        cmds.push_back({"HSET", p + "hash:1", "f1", "changed-" + r, "added-" + r, "v"});
        cmds.push_back({"SADD", p + "set:3", "added-" + r});
        cmds.push_back({"ZADD", p + "zset:4", "42", "added-" + r, "0.125", "one"});
        cmds.push_back({"EXPIRE", p + "str:0", std::to_string(5000 + round)});
        cmds.push_back({"SET", p + "burst-ttl:" + r, "t", "PX", "9000000"});
        cmds.push_back({"PERSIST", p + "ttl:5"});
        cmds.push_back({"DEL", p + "str:7", p + "hash:8", p + "list:9"});
        cmds.push_back({"MULTI"});
        cmds.push_back({"SET", p + "tx:" + r, "in-multi"});
        cmds.push_back({"INCRBY", p + "counter", "100"});
        cmds.push_back({"RPUSH", p + "tx-list", r});
        cmds.push_back({"EXEC"});
        client.must_pipeline(cmds);
    }
}

BackgroundWriter::BackgroundWriter(int port, std::vector<int> dbs, std::string prefix)
    : port_(port), dbs_(std::move(dbs)), prefix_(std::move(prefix)), thread_([this] { run(); }) {}

BackgroundWriter::~BackgroundWriter() { stop(); }

void BackgroundWriter::stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
}

std::string BackgroundWriter::error() const {
    std::lock_guard lock(mutex_);
    return error_;
}

void BackgroundWriter::wait_more_rounds(uint64_t n, double timeout_s) {
    const uint64_t target = rounds_ + n;
    wait_until("the background writer to do " + std::to_string(n) + " more write rounds", timeout_s,
               [&](std::string& state) {
                   state = "rounds " + std::to_string(rounds_.load()) + ", error: " + error();
                   return rounds_ >= target;
               });
}

void BackgroundWriter::run() {
    try {
        RedisClient client = RedisClient::connect(port_);
        uint64_t i = 0;
        while (!stop_) {
            const int db = dbs_[i % dbs_.size()];
            const std::string p = prefix_ + ":" + std::to_string(db) + ":";
            const std::string n = std::to_string(i);
            const std::string key = p + "s:" + std::to_string(i % 200);
            std::string field = "f";
            field += std::to_string(i % 30);  // (not "f" + ...: GCC 12 -O2 false -Wrestrict)
            std::string member = "m";
            member += std::to_string(i % 40);
            client.must_pipeline({{"SELECT", std::to_string(db)},
                                  {"SET", key, n},
                                  {"INCR", p + "counter"},
                                  {"LPUSH", p + "list", n},
                                  {"LTRIM", p + "list", "0", "49"},
                                  {"HSET", p + "hash", field, n},
                                  {"ZADD", p + "zset", n, member}});
            ++i;
            rounds_ = i;
            sleep_ms(2);
        }
    } catch (const std::exception& e) {
        std::lock_guard lock(mutex_);
        error_ = e.what();
    }
}

}  // namespace psync::test
