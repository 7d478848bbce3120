#include "tests/support/legacy_rdb.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace psync::test {
namespace {

void put_le(std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::string score_text(double score) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%.17g", score);
    return buf;
}

}  // namespace

Rdb2Builder::Rdb2Builder() : bytes_("REDIS0002") {}

void Rdb2Builder::save_len(uint64_t len) {
    if (len < (1 << 6)) {
        bytes_ += static_cast<char>(len);
    } else if (len < (1 << 14)) {
        bytes_ += static_cast<char>(((len >> 8) & 0xff) | 0x40);
        bytes_ += static_cast<char>(len & 0xff);
    } else {
        if (len > 0xffffffffull) throw std::invalid_argument("RDB v2: length above 32 bits");
        bytes_ += static_cast<char>(0x80);
        for (int i = 3; i >= 0; --i) bytes_ += static_cast<char>((len >> (8 * i)) & 0xff);  // big endian
    }
}

void Rdb2Builder::save_string(const std::string& s) {
    save_len(s.size());
    bytes_ += s;
}

void Rdb2Builder::select_db(int db) {
    bytes_ += static_cast<char>(0xFE);
    save_len(static_cast<uint64_t>(db));
    db_ = db;
}

void Rdb2Builder::expire_at_seconds(int64_t unix_s) {
    bytes_ += static_cast<char>(0xFD);
    put_le(bytes_, static_cast<uint32_t>(static_cast<int32_t>(unix_s)), 4);
    pending_expire_ms_ = unix_s * 1000;
}

void Rdb2Builder::expire_at_ms(int64_t unix_ms) {
    bytes_ += static_cast<char>(0xFC);
    put_le(bytes_, static_cast<uint64_t>(unix_ms), 8);
    pending_expire_ms_ = unix_ms;
}

void Rdb2Builder::key_header(uint8_t type, const std::string& key) {
    bytes_ += static_cast<char>(type);
    save_string(key);
}

void Rdb2Builder::after_key(const std::string& key) {
    if (pending_expire_ms_ >= 0) {
        writes_.push_back({db_, {"PEXPIREAT", key, std::to_string(pending_expire_ms_)}});
        pending_expire_ms_ = -1;
    }
}

void Rdb2Builder::string(const std::string& key, const std::string& value) {
    key_header(0, key);
    save_string(value);
    writes_.push_back({db_, {"SET", key, value}});
    after_key(key);
}

void Rdb2Builder::string_int(const std::string& key, int32_t value) {
    key_header(0, key);
    if (value >= -128 && value <= 127) {
        bytes_ += static_cast<char>(0xC0);
        put_le(bytes_, static_cast<uint8_t>(static_cast<int8_t>(value)), 1);
    } else if (value >= -32768 && value <= 32767) {
        bytes_ += static_cast<char>(0xC1);
        put_le(bytes_, static_cast<uint16_t>(static_cast<int16_t>(value)), 2);
    } else {
        bytes_ += static_cast<char>(0xC2);
        put_le(bytes_, static_cast<uint32_t>(value), 4);
    }
    writes_.push_back({db_, {"SET", key, std::to_string(value)}});
    after_key(key);
}

void Rdb2Builder::list(const std::string& key, const std::vector<std::string>& items) {
    key_header(1, key);
    save_len(items.size());
    for (const auto& i : items) save_string(i);
    Command cmd = {"RPUSH", key};
    cmd.insert(cmd.end(), items.begin(), items.end());
    writes_.push_back({db_, cmd});
    after_key(key);
}

void Rdb2Builder::set(const std::string& key, const std::vector<std::string>& members) {
    key_header(2, key);
    save_len(members.size());
    for (const auto& m : members) save_string(m);
    Command cmd = {"SADD", key};
    cmd.insert(cmd.end(), members.begin(), members.end());
    writes_.push_back({db_, cmd});
    after_key(key);
}

void Rdb2Builder::zset(const std::string& key, const std::vector<std::pair<std::string, double>>& members) {
    key_header(3, key);
    save_len(members.size());
    Command cmd = {"ZADD", key};
    for (const auto& [member, score] : members) {
        save_string(member);
        if (std::isinf(score)) {
            bytes_ += static_cast<char>(score > 0 ? 254 : 255);
            cmd.push_back(score > 0 ? "+inf" : "-inf");
        } else {
            const std::string text = score_text(score);
            bytes_ += static_cast<char>(text.size());
            bytes_ += text;
            cmd.push_back(text);
        }
        cmd.push_back(member);
    }
    writes_.push_back({db_, cmd});
    after_key(key);
}

void Rdb2Builder::hash(const std::string& key, const std::vector<std::pair<std::string, std::string>>& fields) {
    key_header(4, key);
    save_len(fields.size());
    Command cmd = {"HSET", key};
    for (const auto& [f, v] : fields) {
        save_string(f);
        save_string(v);
        cmd.push_back(f);
        cmd.push_back(v);
    }
    writes_.push_back({db_, cmd});
    after_key(key);
}

std::string Rdb2Builder::finish() const { return bytes_ + static_cast<char>(0xFF); }

}  // namespace psync::test
