#include "tests/support/redis_client.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <sstream>
#include <stdexcept>

namespace psync::test {
namespace {

Reply convert(const redisReply* r) {
    Reply out;
    switch (r->type) {
        case REDIS_REPLY_STRING:
            out.type = Reply::Type::String;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = Reply::Type::Status;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = Reply::Type::Error;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type = Reply::Type::Integer;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_NIL:
            out.type = Reply::Type::Nil;
            break;
        case REDIS_REPLY_ARRAY:
#ifdef REDIS_REPLY_MAP  // hiredis >= 1.0 (RESP3); Debian 12 ships 0.14
        case REDIS_REPLY_SET:
        case REDIS_REPLY_MAP:
        case REDIS_REPLY_PUSH:
#endif
            out.type = Reply::Type::Array;
            for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
            break;
        default:
            out.type = Reply::Type::Other;
            if (r->str) out.str.assign(r->str, r->len);
            out.integer = r->integer;
            break;
    }
    return out;
}

timeval to_timeval(double seconds) {
    timeval tv;
    tv.tv_sec = static_cast<long>(seconds);
    tv.tv_usec = static_cast<long>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
    return tv;
}

std::string join(const Command& args) {
    std::string out;
    for (const auto& a : args) {
        if (!out.empty()) out += ' ';
        out += a.size() > 60 ? a.substr(0, 60) + "..." : a;
    }
    return out;
}

}  // namespace

std::string Reply::describe() const {
    // Built with append(): GCC 12 at -O2 reports a false -Wrestrict on "literal" + string.
    std::string out;
    switch (type) {
        case Type::String: return out.append(1, '"').append(str).append(1, '"');
        case Type::Status: return out.append("+").append(str);
        case Type::Error: return out.append("-").append(str);
        case Type::Integer: return out.append(":").append(std::to_string(integer));
        case Type::Nil: return "(nil)";
        case Type::Other: return out.append("(other) ").append(str);
        case Type::Array: {
            out = "[";
            for (size_t i = 0; i < elements.size(); ++i) {
                if (i) out += ", ";
                out += elements[i].describe();
            }
            return out + "]";
        }
    }
    return "?";
}

void RedisClient::Free::operator()(redisContext* c) const { redisFree(c); }

RedisClient::RedisClient(redisContext* ctx, int port) : ctx_(ctx), port_(port) {}
RedisClient::RedisClient(RedisClient&&) noexcept = default;
RedisClient& RedisClient::operator=(RedisClient&&) noexcept = default;
RedisClient::~RedisClient() = default;

RedisClient RedisClient::connect(int port, double timeout_s) {
    redisContext* ctx = redisConnectWithTimeout("127.0.0.1", port, to_timeval(timeout_s));
    if (!ctx) throw std::runtime_error("redis 127.0.0.1:" + std::to_string(port) + ": out of memory");
    if (ctx->err) {
        std::string msg = "cannot connect to redis 127.0.0.1:" + std::to_string(port) + ": " + ctx->errstr;
        redisFree(ctx);
        throw std::runtime_error(msg);
    }
    redisSetTimeout(ctx, to_timeval(timeout_s));
    return RedisClient(ctx, port);
}

void RedisClient::throw_io_error(const std::string& what) const {
    throw std::runtime_error("redis 127.0.0.1:" + std::to_string(port_) + ": " + what + ": " +
                             (ctx_->errstr[0] ? ctx_->errstr : "connection error"));
}

Reply RedisClient::command(const Command& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    void* raw = redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(), lens.data());
    if (!raw) throw_io_error(join(args));
    auto* r = static_cast<redisReply*>(raw);
    Reply out = convert(r);
    freeReplyObject(r);
    return out;
}

Reply RedisClient::must(const Command& args) {
    Reply r = command(args);
    if (r.is_error())
        throw std::runtime_error("redis 127.0.0.1:" + std::to_string(port_) + ": " + join(args) +
                                 " -> " + r.describe());
    return r;
}

std::vector<Reply> RedisClient::pipeline(const std::vector<Command>& commands) {
    for (const auto& args : commands) {
        std::vector<const char*> argv;
        std::vector<size_t> lens;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(), lens.data()) !=
            REDIS_OK)
            throw_io_error("append " + join(args));
    }
    std::vector<Reply> replies;
    replies.reserve(commands.size());
    for (size_t i = 0; i < commands.size(); ++i) {
        void* raw = nullptr;
        if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || !raw) throw_io_error("reply to " + join(commands[i]));
        auto* r = static_cast<redisReply*>(raw);
        replies.push_back(convert(r));
        freeReplyObject(r);
    }
    return replies;
}

std::vector<Reply> RedisClient::must_pipeline(const std::vector<Command>& commands) {
    std::vector<Reply> replies = pipeline(commands);
    for (size_t i = 0; i < replies.size(); ++i) {
        if (replies[i].is_error())
            throw std::runtime_error("redis 127.0.0.1:" + std::to_string(port_) + ": " + join(commands[i]) +
                                     " -> " + replies[i].describe());
    }
    return replies;
}

std::string info_value(const std::string& info, const std::string& field) {
    std::istringstream in(info);
    std::string line;
    const std::string prefix = field + ":";
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.compare(0, prefix.size(), prefix) == 0) return line.substr(prefix.size());
    }
    return "";
}

}  // namespace psync::test
