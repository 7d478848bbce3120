// An RDB file of version 2, the format Redis 2.4 writes, built byte by byte: "REDIS0002",
// 0xFE select db, 0xFD expire (unix seconds, 4 bytes; what 2.4 writes) or 0xFC expire (unix ms,
// 8 bytes; 2.6+), value types 0 string, 1 list, 2 set, 3 zset, 4 hash in their plain
// length-prefixed encodings, 0xFF end, no checksum. The same content is recorded as commands,
// so a real server can be given it for comparison.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/redis_client.h"

namespace psync::test {

class Rdb2Builder {
public:
    Rdb2Builder();

    void select_db(int db);
    // Expire of the next key.
    void expire_at_seconds(int64_t unix_s);
    void expire_at_ms(int64_t unix_ms);

    void string(const std::string& key, const std::string& value);
    // A string saved in 2.4's integer encoding (0xC0 int8, 0xC1 int16, 0xC2 int32).
    void string_int(const std::string& key, int32_t value);
    void list(const std::string& key, const std::vector<std::string>& items);
    void set(const std::string& key, const std::vector<std::string>& members);
    // Scores as 2.4 writes them: a length byte and "%.17g", or 254 (+inf) / 255 (-inf).
    void zset(const std::string& key, const std::vector<std::pair<std::string, double>>& members);
    void hash(const std::string& key, const std::vector<std::pair<std::string, std::string>>& fields);

    // The file: everything so far and the 0xFF end marker.
    std::string finish() const;
    // Writes that give a server the same content: (db, command).
    const std::vector<std::pair<int, Command>>& writes() const { return writes_; }

private:
    void key_header(uint8_t type, const std::string& key);
    void save_len(uint64_t len);
    void save_string(const std::string& s);
    void after_key(const std::string& key);

    std::string bytes_;
    int db_ = 0;
    int64_t pending_expire_ms_ = -1;
    std::vector<std::pair<int, Command>> writes_;
};

}  // namespace psync::test
