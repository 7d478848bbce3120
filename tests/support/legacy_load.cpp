#include "tests/support/legacy_load.h"

#include <doctest/doctest.h>

#include <chrono>

#include "tests/support/keyspace.h"
#include "tests/support/test_context.h"

namespace psync::test {

void fill(LegacyServer& m, const std::vector<int>& dbs, int keys) {
    for (int db : dbs) {
        std::vector<std::pair<int, Command>> batch;
        for (int i = 0; i < keys; ++i) {
            batch.push_back({db, {"SET", "k:" + std::to_string(db) + ":" + std::to_string(i), "v" + std::to_string(i * 7)}});
            if (i % 10 == 0) batch.push_back({db, {"SET", "n:" + std::to_string(db) + ":" + std::to_string(i), std::to_string(i * 4099 - 70000)}});
        }
        batch.push_back({db, {"SET", std::to_string(1000 + db), "-5"}});
        batch.push_back({db, {"SET", "big:" + std::to_string(db), "12345678901234"}});
        batch.push_back({db, {"SET", "i32:" + std::to_string(db), "-2147483648"}});
        batch.push_back({db, {"SET", "zero:" + std::to_string(db), "007"}});
        m.write_all(batch);
    }
}

LegacyLoad::LegacyLoad(LegacyServer& master, std::vector<int> dbs)
    : master_(master), dbs_(std::move(dbs)), thread_([this] { run(); }) {}

void LegacyLoad::stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
}

std::string LegacyLoad::error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
}

void LegacyLoad::wait_more_rounds(uint64_t n, double timeout_s) {
    const uint64_t target = rounds_ + n;
    wait_until("the load to write " + std::to_string(n) + " more rounds", timeout_s, [&](std::string& state) {
        state = std::to_string(rounds_) + " rounds, error: " + error();
        return rounds_ >= target || !error().empty();
    });
    REQUIRE_MESSAGE(error().empty(), error());
}

void LegacyLoad::run() {
    try {
        for (uint64_t r = 0; !stop_; ++r) {
            const int db = dbs_[r % dbs_.size()];
            const std::string d = std::to_string(db);
            std::vector<std::pair<int, Command>> batch;
            const uint64_t len = 1 + (r * 7) % 4;
            for (uint64_t i = 0; i < len; ++i) {
                const uint64_t x = r * 4 + i;
                switch (x % 5) {
                    case 0: batch.push_back({db, {"SET", "l:" + d + ":" + std::to_string(x % 300), "w" + std::to_string(x)}}); break;
                    case 1: batch.push_back({db, {"INCR", "c:" + d + ":" + std::to_string(x % 17)}}); break;
                    case 2: batch.push_back({db, {"DEL", "l:" + d + ":" + std::to_string((x * 13) % 300)}}); break;
                    case 3: batch.push_back({db, {"MSET", "m:" + d + ":" + std::to_string(x % 50), std::to_string(x), "k:" + d + ":" + std::to_string(x % 300), "u" + std::to_string(x)}}); break;
                    default: batch.push_back({db, {"APPEND", "a:" + d + ":" + std::to_string(x % 40), "x"}}); break;
                }
            }
            master_.write_all(batch);
            rounds_++;
            std::this_thread::sleep_for(std::chrono::microseconds(1000));
        }
    } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = e.what();
    }
}

std::string describe(LegacyServer& m) {
    std::string out = "legacy master:";
    for (const auto& r : m.replicas()) {
        out += "\n  SYNC " + std::to_string(r.sync_number) + (r.attached ? " (attached)" : "") + ": " + r.how;
        if (r.how == "copied")
            out += " from SYNC " + std::to_string(r.copied_from) + " whose slaveseldb was " + std::to_string(r.copied_seldb);
        out += ", " + r.state + ", rdb " + std::to_string(r.rdb_bytes) + " B, " + std::to_string(r.commands) +
               " commands, " + std::to_string(r.selects) + " selects, " + std::to_string(r.pings) + " pings, " +
               std::to_string(r.newlines) + " newlines, " + std::to_string(r.misrouted) + " misrouted";
        if (r.commands_through_first_publish)
            out += ", first PUBLISH is its command " + std::to_string(*r.commands_through_first_publish) + " (" +
                   std::to_string(*r.misrouted_through_first_publish) + " misrouted through it)";
    }
    out += "\n  log:";
    for (const auto& l : m.log()) out += " [" + l + "]";
    if (!m.error().empty()) out += "\n  loop error: " + m.error();
    return out;
}

void wait_equal(LegacyServer& master, const RedisServer& replica, double timeout_s) {
    wait_until(replica.name() + "'s keyspace to equal the legacy master's", timeout_s, [&](std::string& state) {
        state = diff_keyspaces(master.keyspace(), read_keyspace(replica.port()), "master", replica.name());
        return state.empty();
    });
}

}  // namespace psync::test
