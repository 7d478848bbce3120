// A small synchronous hiredis wrapper with timeouts. I/O errors throw std::runtime_error.
#pragma once

#include <memory>
#include <string>
#include <vector>

struct redisContext;

namespace psync::test {

struct Reply {
    enum class Type { String, Status, Error, Integer, Nil, Array, Other };
    Type type = Type::Nil;
    std::string str;        // String, Status, Error (and the text of Other)
    long long integer = 0;  // Integer
    std::vector<Reply> elements;

    bool is_error() const { return type == Type::Error; }
    bool is_nil() const { return type == Type::Nil; }
    // Human-readable form, for messages.
    std::string describe() const;
};

using Command = std::vector<std::string>;

class RedisClient {
public:
    // Connects to 127.0.0.1:port; connect and I/O timeouts are timeout_s.
    static RedisClient connect(int port, double timeout_s = 5.0);

    RedisClient(RedisClient&&) noexcept;
    RedisClient& operator=(RedisClient&&) noexcept;
    ~RedisClient();

    // Sends one command and returns its reply (error replies are returned, not thrown).
    Reply command(const Command& args);
    // Same, but throws std::runtime_error on an error reply.
    Reply must(const Command& args);
    // Sends all commands in one write, then reads all replies in order.
    std::vector<Reply> pipeline(const std::vector<Command>& commands);
    // Pipeline that throws on the first error reply.
    std::vector<Reply> must_pipeline(const std::vector<Command>& commands);

    int port() const { return port_; }

private:
    RedisClient(redisContext* ctx, int port);
    [[noreturn]] void throw_io_error(const std::string& what) const;

    struct Free {
        void operator()(redisContext* c) const;
    };
    std::unique_ptr<redisContext, Free> ctx_;
    int port_ = 0;
};

// Parses "key:value" lines of an INFO reply.
std::string info_value(const std::string& info, const std::string& field);

}  // namespace psync::test
