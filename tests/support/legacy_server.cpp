// Source references are to tag 2.6.17 of github.com/redis/redis (src/<file>:<line>).
#include "tests/support/legacy_server.h"

#include "tests/support/keyspace.h"
#include "tests/support/ports.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <future>
#include <random>
#include <stdexcept>

#include "tests/support/scripted_master.h"
#include "tests/support/test_context.h"

namespace psync::test {

namespace {

constexpr size_t kIoBufLen = 16 * 1024;          // REDIS_IOBUF_LEN (redis.h)
constexpr size_t kInlineMaxSize = 64 * 1024;     // REDIS_INLINE_MAX_SIZE (redis.h)
constexpr int kDbNum = 16;                       // databases 16
constexpr double kTaskTimeoutS = 10;

enum class Repl { kNone, kWaitBgsaveStart, kWaitBgsaveEnd, kSendBulk, kOnline };

const char* repl_name(Repl r) {
    switch (r) {
        case Repl::kNone: return "none";
        case Repl::kWaitBgsaveStart: return "wait_bgsave_start";
        case Repl::kWaitBgsaveEnd: return "wait_bgsave_end";
        case Repl::kSendBulk: return "send_bulk";
        case Repl::kOnline: return "online";
    }
    return "?";
}

std::string lower(std::string s) {
    for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

std::string err(const std::string& msg) { return "-ERR " + msg + "\r\n"; }
std::string integer(long long v) { return ":" + std::to_string(v) + "\r\n"; }
std::string bulk(const std::string& s) {
    std::string out = "$" + std::to_string(s.size()) + "\r\n";
    out.append(s).append("\r\n");
    return out;
}

// strtoll as getLongLongFromObject (object.c:481-501) uses it on a raw string.
bool to_long_long(const std::string& s, long long& out) {
    if (s.empty()) {  // strtoll("") is 0 with eptr at the end: 2.6 takes it as 0
        out = 0;
        return true;
    }
    if (std::isspace(static_cast<unsigned char>(s[0]))) return false;
    errno = 0;
    char* end = nullptr;
    out = std::strtoll(s.c_str(), &end, 10);
    return *end == '\0' && errno != ERANGE && end == s.c_str() + s.size();
}

// getLongFromObjectOrReply's test (object.c), for SELECT and REPLCONF listening-port.
bool to_long(const std::string& s, long& out) {
    long long v = 0;
    if (!to_long_long(s, v) || v < LONG_MIN || v > LONG_MAX) return false;
    out = static_cast<long>(v);
    return true;
}


// rdbSaveLen (rdb.c): 6-bit, 14-bit, or 0x80 and 32 bits big endian.
void rdb_len(std::string& out, uint64_t len) {
    if (len < (1 << 6)) {
        out += static_cast<char>(len);
    } else if (len < (1 << 14)) {
        out += static_cast<char>(((len >> 8) & 0xff) | 0x40);
        out += static_cast<char>(len & 0xff);
    } else {
        out += static_cast<char>(0x80);
        for (int i = 3; i >= 0; --i) out += static_cast<char>((len >> (8 * i)) & 0xff);
    }
}

// rdbSaveRawString (rdb.c): a string of at most 11 bytes that is a canonical decimal
// (rdbTryIntegerEncoding: strtoll, then ll2string gives it back) in int8/16/32 range is
// saved as 0xC0/0xC1/0xC2 and the value little endian (rdbEncodeInteger); else length and
// bytes. The INT-encoded objects of SET and INCR (rdbSaveLongLongAsStringObject) end the same.
void rdb_string(std::string& out, const std::string& s) {
    long long v = 0;
    if (s.size() <= 11 && !s.empty() && to_long_long(s, v) && std::to_string(v) == s) {
        if (v >= -(1 << 7) && v <= (1 << 7) - 1) {
            out += static_cast<char>(0xC0);
            out += static_cast<char>(v & 0xff);
            return;
        }
        if (v >= -(1 << 15) && v <= (1 << 15) - 1) {
            out += static_cast<char>(0xC1);
            out += static_cast<char>(v & 0xff);
            out += static_cast<char>((v >> 8) & 0xff);
            return;
        }
        if (v >= -(1LL << 31) && v <= (1LL << 31) - 1) {
            out += static_cast<char>(0xC2);
            for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
            return;
        }
    }
    rdb_len(out, s.size());
    out += s;
}

std::string random_hex40() {
    std::random_device rd;
    std::mt19937_64 gen(rd());
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 40; ++i) s += digits[gen() % 16];
    return s;
}

}  // namespace

uint64_t redis_crc64(uint64_t crc, const std::string& bytes) {
    // crc64.c: reflected, polynomial 0xad93d23594c935a9 (0x95ac9329ac4bc9b5 reflected).
    for (unsigned char b : bytes) {
        crc ^= b;
        for (int i = 0; i < 8; ++i) crc = (crc & 1) ? (crc >> 1) ^ 0x95ac9329ac4bc9b5ULL : crc >> 1;
    }
    return crc;
}

std::string redis26_rdb(const std::array<std::map<std::string, std::string>, 16>& dbs) {
    // rdbSave (rdb.c:630-700): magic "REDIS%04d" with REDIS_RDB_VERSION 6.
    std::string out = "REDIS0006";
    for (int db = 0; db < kDbNum; ++db) {
        if (dbs[db].empty()) continue;  // if (dictSize(d) == 0) continue;
        out += static_cast<char>(0xFE);  // REDIS_RDB_OPCODE_SELECTDB
        rdb_len(out, static_cast<uint64_t>(db));
        for (const auto& [k, v] : dbs[db]) {
            out += static_cast<char>(0);  // REDIS_RDB_TYPE_STRING
            rdb_string(out, k);
            rdb_string(out, v);
        }
    }
    out += static_cast<char>(0xFF);  // REDIS_RDB_OPCODE_EOF
    const uint64_t crc = redis_crc64(0, out);
    for (int i = 0; i < 8; ++i) out += static_cast<char>((crc >> (8 * i)) & 0xff);  // memrev64ifbe
    return out;
}

struct LegacyServer::Client {
    int id = 0;
    int fd = -1;
    bool attached = false;  // no socket: bytes go to `sink`
    std::string sink;
    std::string in;
    std::string out;  // c->buf and c->reply
    int db = 0;
    long listening_port = 0;  // REPLCONF listening-port
    bool authenticated = false;
    bool close_after_reply = false;
    bool slave = false;
    Repl repl = Repl::kNone;
    int slaveseldb = 0;
    int stream_db = 0;  // the db the `select` lines of its stream imply
    std::shared_ptr<const std::string> rdb;
    std::string bulk_header;
    size_t header_sent = 0;
    size_t rdb_sent = 0;
    size_t record = SIZE_MAX;  // index in records_ once it sent SYNC
};

struct LegacyServer::Save {
    Clock::time_point ends;
    int64_t started_unix = 0;
    long long dirty_before = 0;  // server.dirty_before_bgsave
    std::shared_ptr<const std::string> rdb;
};

struct LegacyServer::Task {
    std::function<void()> fn;
    std::promise<void> done;
};

LegacyServer::LegacyServer(LegacyServerOptions options) : options_(std::move(options)) {
    listen_fd_ = listen_on_loopback("legacy server", 64, SOCK_NONBLOCK, port_);
    if (::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
        ::close(listen_fd_);
        throw std::runtime_error("legacy server: pipe failed");
    }
    run_id_ = random_hex40();
    started_unix_ = unix_time_ms() / 1000;
    last_save_unix_ = started_unix_;
    api_client_ = std::make_unique<Client>();
    api_client_->id = 0;
    api_client_->authenticated = true;
    thread_ = std::thread([this] { run(); });
    // Read by the loop thread only inside tasks, which the mutex orders after this.
    thread_id_ = thread_.get_id();
}

LegacyServer::~LegacyServer() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_requested_ = true;
    }
    char b = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fds_[1], &b, 1);
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
    ::close(wake_fds_[0]);
    ::close(wake_fds_[1]);
}

// ---------------------------------------------------------------- the loop thread

void LegacyServer::run() {
    const auto born = Clock::now();
    std::string why;
    try {
        while (true) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (stop_requested_) break;
            }
            if (seconds_since(born) > options_.lifetime_seconds) {
                why = "the legacy server's lifetime (" + std::to_string(options_.lifetime_seconds) + " s) is over";
                break;
            }
            loop_once();
        }
    } catch (const std::exception& e) {
        why = std::string("the legacy server's loop failed: ") + e.what();
    }
    for (auto& [id, c] : clients_) {
        if (c->fd >= 0) ::close(c->fd);
    }
    clients_.clear();
    slaves_.clear();
    std::vector<std::shared_ptr<Task>> left;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopped_ = true;
        if (!why.empty()) error_ = why;
        left.swap(tasks_);
    }
    for (auto& t : left) {
        t->done.set_exception(std::make_exception_ptr(std::runtime_error("legacy server stopped")));
    }
}

void LegacyServer::loop_once() {
    std::vector<pollfd> fds;
    std::vector<int> ids;
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_fds_[0], POLLIN, 0});
    for (auto& [id, c] : clients_) {
        if (c->fd < 0) continue;
        short ev = POLLIN;
        const bool may_write = c->repl == Repl::kNone || c->repl == Repl::kOnline;
        if (c->repl == Repl::kSendBulk || (may_write && !c->out.empty())) ev |= POLLOUT;
        fds.push_back({c->fd, ev, 0});
        ids.push_back(id);
    }
    // serverCron runs at hz 10 (redis.c): the replication cron and the BGSAVE check are
    // looked at every 100 ms at most; here the wait is at most 20 ms.
    int r = ::poll(fds.data(), fds.size(), 20);
    if (r < 0 && errno != EINTR) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    if (r > 0) {
        if (fds[1].revents & POLLIN) {
            char buf[256];
            while (::read(wake_fds_[0], buf, sizeof buf) > 0) {
            }
        }
        if (fds[0].revents & POLLIN) accept_clients();
        for (size_t i = 0; i < ids.size(); ++i) {
            const pollfd& p = fds[i + 2];
            auto it = clients_.find(ids[i]);
            if (it == clients_.end()) continue;
            Client& c = *it->second;
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) read_client(c);
            it = clients_.find(ids[i]);
            if (it == clients_.end()) continue;
            if (p.revents & POLLOUT) write_client(*it->second);
        }
    }
    // Tasks from other threads (write(), bgsave(), getters).
    std::vector<std::shared_ptr<Task>> tasks;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        tasks.swap(tasks_);
    }
    for (auto& t : tasks) {
        try {
            t->fn();
            t->done.set_value();
        } catch (...) {
            t->done.set_exception(std::current_exception());
        }
    }
    // The BGSAVE child exits (serverCron -> backgroundSaveDoneHandler -> updateSlavesWaitingBgsave).
    if (save_ && Clock::now() >= save_->ends) bgsave_done();
    // replicationCron, every repl-ping-slave-period (replication.c:809: cronloops % (period*hz)
    // == 0, the first time at the first cron run).
    replication_cron();
    // Replicas without a socket take their bytes at once, when a socket would be written.
    std::vector<int> attached;
    for (auto& [id, c] : clients_)
        if (c->attached) attached.push_back(id);
    for (int id : attached) {
        auto it = clients_.find(id);
        if (it != clients_.end()) write_client(*it->second);
    }
}

LegacyServer::Client& LegacyServer::new_client(int fd) {
    auto c = std::make_unique<Client>();
    c->id = next_client_id_++;
    c->fd = fd;
    c->authenticated = false;  // createClient (networking.c:87): c->authenticated = 0
    Client& ref = *c;
    clients_[ref.id] = std::move(c);
    return ref;
}

void LegacyServer::accept_clients() {
    while (true) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // anetEnableTcpNoDelay
        new_client(fd);
    }
}

void LegacyServer::read_client(Client& c) {
    char buf[kIoBufLen];
    const int id = c.id;
    while (true) {
        ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
            c.in.append(buf, static_cast<size_t>(n));
            if (static_cast<size_t>(n) < sizeof buf) break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        free_client(id);  // closed or reset (freeClient)
        return;
    }
    process_input(c);
    auto it = clients_.find(id);
    if (it != clients_.end() && it->second->close_after_reply && it->second->out.empty()) free_client(id);
}

void LegacyServer::write_client(Client& c) {
    const int id = c.id;
    auto push = [&](const char* data, size_t len) -> size_t {  // bytes taken
        if (c.attached) {
            c.sink.append(data, len);
            return len;
        }
        ssize_t n = ::send(c.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
        if (n < 0) throw std::system_error(errno, std::generic_category());
        return static_cast<size_t>(n);
    };
    try {
        if (c.repl == Repl::kSendBulk) {
            // sendBulkToSlave (replication.c:225-276): "$<len>\r\n" first, then the file in
            // REDIS_IOBUF_LEN reads, one write per writable event; at the end ONLINE, and the
            // output buffer held since the fork goes out through sendReplyToClient.
            while (c.header_sent < c.bulk_header.size()) {
                size_t n = push(c.bulk_header.data() + c.header_sent, c.bulk_header.size() - c.header_sent);
                if (n == 0) return;
                c.header_sent += n;
            }
            do {
                const size_t chunk = std::min(kIoBufLen, c.rdb->size() - c.rdb_sent);
                size_t n = chunk ? push(c.rdb->data() + c.rdb_sent, chunk) : 0;
                c.rdb_sent += n;
                if (n == 0 && chunk) return;
            } while (c.attached && c.rdb_sent < c.rdb->size());
            if (c.rdb_sent < c.rdb->size()) return;
            c.repl = Repl::kOnline;
            c.rdb.reset();
            log_line("Synchronization with slave succeeded");
            update_record(c);
            if (!c.attached) return;  // the stream on the next writable event
        }
        if (c.repl != Repl::kNone && c.repl != Repl::kOnline) return;  // held (prepareClientToWrite)
        while (!c.out.empty()) {
            size_t n = push(c.out.data(), c.out.size());
            if (n == 0) return;
            c.out.erase(0, n);
        }
    } catch (const std::system_error&) {
        free_client(id);
        return;
    }
    if (c.close_after_reply && c.out.empty()) free_client(id);
}

void LegacyServer::free_client(int id) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    Client& c = *it->second;
    if (c.fd >= 0) ::close(c.fd);
    slaves_.erase(std::remove(slaves_.begin(), slaves_.end(), &c), slaves_.end());
    if (c.record != SIZE_MAX) records_[c.record].state = "closed";
    if (c.slave) log_line("Connection with slave lost.");
    clients_.erase(it);
}

// processInputBuffer / processInlineBuffer / processMultibulkBuffer (networking.c:796-1000).
void LegacyServer::process_input(Client& c) {
    const int id = c.id;
    while (!c.in.empty()) {
        if (c.close_after_reply) return;
        Command argv;
        if (c.in[0] == '*') {
            size_t eol = c.in.find("\r\n");
            if (eol == std::string::npos) {
                if (c.in.size() > kInlineMaxSize) {
                    reply(c, err("Protocol error: too big mbulk count string"));
                    c.close_after_reply = true;
                }
                return;
            }
            long long count = 0;
            if (!to_long_long(c.in.substr(1, eol - 1), count) || count > 1024 * 1024) {
                reply(c, err("Protocol error: invalid multibulk length"));
                c.close_after_reply = true;
                return;
            }
            size_t pos = eol + 2;
            if (count <= 0) {  // "*0\r\n" or "*-1\r\n": no command
                c.in.erase(0, pos);
                continue;
            }
            bool complete = true;
            for (long long i = 0; i < count; ++i) {
                size_t e = c.in.find("\r\n", pos);
                if (e == std::string::npos) {
                    complete = false;
                    break;
                }
                if (c.in[pos] != '$') {
                    reply(c, err(std::string("Protocol error: expected '$', got '") + c.in[pos] + "'"));
                    c.close_after_reply = true;
                    return;
                }
                long long len = 0;
                if (!to_long_long(c.in.substr(pos + 1, e - pos - 1), len) || len < 0 || len > 512LL * 1024 * 1024) {
                    reply(c, err("Protocol error: invalid bulk length"));
                    c.close_after_reply = true;
                    return;
                }
                pos = e + 2;
                if (c.in.size() < pos + static_cast<size_t>(len) + 2) {
                    complete = false;
                    break;
                }
                argv.push_back(c.in.substr(pos, static_cast<size_t>(len)));
                pos += static_cast<size_t>(len) + 2;
            }
            if (!complete) return;
            c.in.erase(0, pos);
        } else {
            // 2.6.17 looks for "\r\n" (strstr), not a bare "\n"; splits on single spaces and
            // drops empty arguments (sdssplitlen, then only sdslen() > 0).
            size_t eol = c.in.find("\r\n");
            if (eol == std::string::npos) {
                if (c.in.size() > kInlineMaxSize) {
                    reply(c, err("Protocol error: too big inline request"));
                    c.close_after_reply = true;
                }
                return;
            }
            const std::string line = c.in.substr(0, eol);
            c.in.erase(0, eol + 2);
            size_t p = 0;
            while (p <= line.size()) {
                size_t next = line.find(' ', p);
                if (next == std::string::npos) next = line.size();
                if (next > p) argv.push_back(line.substr(p, next - p));
                p = next + 1;
            }
        }
        if (argv.empty()) continue;  // resetClient
        process_command(c, argv);
        if (clients_.find(id) == clients_.end()) return;
    }
}

void LegacyServer::reply(Client& c, const std::string& bytes) { c.out += bytes; }

// processCommand (redis.c:1729-1830) and call() (redis.c:1661-1719).
void LegacyServer::process_command(Client& c, const Command& argv) {
    const std::string name = lower(argv[0]);
    if (name == "quit") {  // redis.c:1734-1738
        reply(c, "+OK\r\n");
        c.close_after_reply = true;
        return;
    }
    struct Spec {
        int arity;
        bool force_replication;  // flag "f" (PUBLISH, redis.c:239)
    };
    static const std::map<std::string, Spec> table = {
        {"get", {2, false}},     {"set", {-3, false}},    {"append", {3, false}},  {"del", {-2, false}},
        {"exists", {2, false}},  {"incr", {2, false}},    {"decr", {2, false}},    {"incrby", {3, false}},
        {"decrby", {3, false}},  {"mset", {-3, false}},   {"select", {2, false}},  {"dbsize", {1, false}},
        {"flushdb", {1, false}}, {"auth", {2, false}},    {"ping", {1, false}},    {"bgsave", {1, false}},
        {"sync", {1, false}},    {"replconf", {-1, false}}, {"info", {-1, false}}, {"publish", {3, true}},
    };
    auto it = table.find(name);
    if (it == table.end() || (name == "publish" && options_.refuse_publish)) {
        // redis.c:1743-1747; `rename-command PUBLISH ""` removes it from the table.
        reply(c, err("unknown command '" + argv[0] + "'"));
        return;
    }
    const Spec& spec = it->second;
    const int argc = static_cast<int>(argv.size());
    if ((spec.arity > 0 && spec.arity != argc) || argc < -spec.arity) {  // redis.c:1748-1753
        reply(c, err("wrong number of arguments for '" + name + "' command"));
        return;
    }
    if (!options_.requirepass.empty() && !c.authenticated && name != "auth") {  // redis.c:1757-1762
        reply(c, err("operation not permitted"));
        return;
    }

    auto& db = dbs_[static_cast<size_t>(c.db)];
    long long dirty = 0;
    if (name == "ping") {
        reply(c, "+PONG\r\n");
    } else if (name == "auth") {  // redis.c:1958-1968
        if (options_.requirepass.empty()) {
            reply(c, err("Client sent AUTH, but no password is set"));
        } else if (argv[1] == options_.requirepass) {
            c.authenticated = true;
            reply(c, "+OK\r\n");
        } else {
            c.authenticated = false;
            reply(c, err("invalid password"));
        }
    } else if (name == "select") {  // db.c:257-269
        long n = 0;
        if (!to_long(argv[1], n) || n < 0 || n >= kDbNum) {
            reply(c, err("invalid DB index"));
        } else {
            c.db = static_cast<int>(n);
            reply(c, "+OK\r\n");
        }
    } else if (name == "info") {  // redis.c:2365-2377
        if (argc > 2) {
            reply(c, err("syntax error"));
        } else {
            reply(c, bulk(info(argc == 2 ? lower(argv[1]) : "default")));
        }
    } else if (name == "get") {
        auto k = db.find(argv[1]);
        reply(c, k == db.end() ? "$-1\r\n" : bulk(k->second));
    } else if (name == "set") {  // t_string.c:91-122; SET k v [NX] [XX]
        bool nx = false, xx = false;
        for (int j = 3; j < argc; ++j) {
            const std::string a = lower(argv[static_cast<size_t>(j)]);
            if (a == "nx") nx = true;
            else if (a == "xx") xx = true;
            else if ((a == "ex" || a == "px") && j + 1 < argc) {
                reply(c, err("expires are not emulated by the test's LegacyServer"));
                return;
            } else {
                reply(c, err("syntax error"));
                return;
            }
        }
        const bool exists = db.count(argv[1]) > 0;
        if ((nx && exists) || (xx && !exists)) {
            reply(c, "$-1\r\n");
        } else {
            db[argv[1]] = argv[2];
            dirty++;
            reply(c, "+OK\r\n");
        }
    } else if (name == "append") {
        auto& v = db[argv[1]];
        v += argv[2];
        dirty++;
        reply(c, integer(static_cast<long long>(v.size())));
    } else if (name == "del") {  // db.c:235-246
        long long deleted = 0;
        for (int j = 1; j < argc; ++j) deleted += static_cast<long long>(db.erase(argv[static_cast<size_t>(j)]));
        dirty += deleted;
        reply(c, integer(deleted));
    } else if (name == "exists") {
        reply(c, integer(db.count(argv[1]) ? 1 : 0));
    } else if (name == "incr" || name == "decr" || name == "incrby" || name == "decrby") {  // t_string.c:323-348
        long long by = name == "incr" ? 1 : name == "decr" ? -1 : 0;
        if (name == "incrby" || name == "decrby") {
            if (!to_long_long(argv[2], by)) {
                reply(c, err("value is not an integer or out of range"));
                return;
            }
            if (name == "decrby") by = -by;
        }
        long long value = 0;
        auto k = db.find(argv[1]);
        if (k != db.end() && !to_long_long(k->second, value)) {
            reply(c, err("value is not an integer or out of range"));
            return;
        }
        if ((by < 0 && value < 0 && by < (LLONG_MIN - value)) || (by > 0 && value > 0 && by > (LLONG_MAX - value))) {
            reply(c, err("increment or decrement would overflow"));
            return;
        }
        value += by;
        db[argv[1]] = std::to_string(value);
        dirty++;
        reply(c, integer(value));
    } else if (name == "mset") {  // t_string.c:286-313
        if (argc % 2 == 0) {
            reply(c, err("wrong number of arguments for MSET"));
            return;
        }
        for (int j = 1; j < argc; j += 2) db[argv[static_cast<size_t>(j)]] = argv[static_cast<size_t>(j + 1)];
        dirty += (argc - 1) / 2;
        reply(c, "+OK\r\n");
    } else if (name == "dbsize") {
        reply(c, integer(static_cast<long long>(db.size())));
    } else if (name == "flushdb") {  // db.c:209-215: dirty += dictSize (an empty db: not propagated)
        dirty += static_cast<long long>(db.size());
        db.clear();
        reply(c, "+OK\r\n");
    } else if (name == "publish") {  // pubsub.c:307-310: no subscribers here
        reply(c, ":0\r\n");
    } else if (name == "bgsave") {  // rdb.c:1221-1231
        if (save_) {
            reply(c, err("Background save already in progress"));
        } else {
            start_bgsave(options_.save_seconds, false);
            reply(c, "+Background saving started\r\n");
        }
    } else if (name == "replconf") {  // replication.c:197-223
        if (argc % 2 == 0) {
            reply(c, err("syntax error"));
            return;
        }
        for (int j = 1; j < argc; j += 2) {
            if (lower(argv[static_cast<size_t>(j)]) == "listening-port") {
                long port = 0;
                if (!to_long(argv[static_cast<size_t>(j + 1)], port)) {
                    reply(c, err("value is not an integer or out of range"));
                    return;
                }
                c.listening_port = port;
            } else {
                reply(c, err("Unrecognized REPLCONF option: " + argv[static_cast<size_t>(j)]));
                return;
            }
        }
        reply(c, "+OK\r\n");
    } else if (name == "sync") {
        sync_command(c);
    }
    // call(): propagate when the dataset changed, or when the command forces it (redis.c:1695-1704),
    // in the db of the client that ran it (propagate(c->cmd, c->db->id, ...)).
    dirty_ += dirty;
    if (dirty > 0 || spec.force_replication) feed_slaves(c.db, argv);
}

// replicationFeedSlaves (replication.c:42-74).
void LegacyServer::feed_slaves(int db, const Command& argv) {
    const bool is_publish = lower(argv[0]) == "publish";
    const std::string cmd = multibulk(argv);  // addReplyMultiBulkLen + addReplyBulk
    for (Client* s : slaves_) {
        if (s->repl == Repl::kWaitBgsaveStart) continue;  // :52
        LegacyReplica& rec = records_[s->record];
        if (s->slaveseldb != db) {  // :57-70, shared.select[] is "select %d\r\n" too (redis.c:1202-1205)
            s->out += "select " + std::to_string(db) + "\r\n";
            s->slaveseldb = db;
            s->stream_db = db;
            rec.selects++;
        }
        s->out += cmd;
        rec.commands++;
        if (s->stream_db != db) rec.misrouted++;
        if (is_publish && !rec.commands_through_first_publish) {
            rec.commands_through_first_publish = rec.commands;
            rec.misrouted_through_first_publish = rec.misrouted;
        }
    }
}

// syncCommand (replication.c:117-183).
void LegacyServer::sync_command(Client& c) {
    if (c.slave) return;  // :119
    // :132-135: pending replies in the reply list (past the 16 KB static buffer).
    if (c.out.size() > kIoBufLen) {
        reply(c, err("SYNC is invalid with pending input"));
        return;
    }
    log_line("Slave ask for synchronization");
    const int number = static_cast<int>(records_.size()) + 1;
    records_.push_back(LegacyReplica{});
    c.record = records_.size() - 1;
    records_[c.record].sync_number = number;
    records_[c.record].attached = c.attached;
    const int id = c.id;
    if (before_sync_) before_sync_(number);
    if (clients_.find(id) == clients_.end() && !c.attached) return;  // cannot happen: hooks don't close
    LegacyReplica& rec = records_[c.record];
    if (save_) {
        // :140-164. A BGSAVE is running: a replica waiting for its end is "registering
        // differences since the fork": copy its output buffer. Else wait for the next BGSAVE.
        Client* src = nullptr;
        for (Client* s : slaves_) {
            if (s->repl == Repl::kWaitBgsaveEnd) {
                src = s;
                break;
            }
        }
        if (src) {
            // copyClientOutputBuffer (networking.c:512-518): reply list, buf and its length.
            // Not slaveseldb: the stream's db after the copy is src's, 2.6 assumes 0 (:180).
            c.out = src->out;
            c.stream_db = src->stream_db;
            const LegacyReplica& from = records_[src->record];
            rec.commands = from.commands;
            rec.selects = from.selects;
            rec.misrouted = from.misrouted;
            rec.commands_through_first_publish = from.commands_through_first_publish;
            rec.misrouted_through_first_publish = from.misrouted_through_first_publish;
            rec.how = "copied";
            rec.copied_from = from.sync_number;
            rec.copied_seldb = src->slaveseldb;
            c.repl = Repl::kWaitBgsaveEnd;
            log_line("Waiting for end of BGSAVE for SYNC");
        } else {
            rec.how = "waited";
            c.repl = Repl::kWaitBgsaveStart;
            log_line("Waiting for next BGSAVE for SYNC");
        }
    } else {
        log_line("Starting BGSAVE for SYNC");
        start_bgsave(options_.save_seconds, true);
        rec.how = "forked";
        c.stream_db = 0;
        c.repl = Repl::kWaitBgsaveEnd;
    }
    c.slave = true;       // :179
    c.slaveseldb = 0;     // :180
    slaves_.push_back(&c);  // :181
    update_record(c);
    if (after_sync_) after_sync_(number);
}

// rdbSaveBackground (rdb.c): the child's RDB is the dataset at the fork.
void LegacyServer::start_bgsave(double seconds, bool for_replicas) {
    save_ = std::make_unique<Save>();
    save_->rdb = std::make_shared<const std::string>(redis26_rdb(dbs_));
    save_->ends = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
    save_->started_unix = unix_time_ms() / 1000;
    save_->dirty_before = dirty_;
    log_line(for_replicas ? "Background saving started (for SYNC)" : "Background saving started");
}

// backgroundSaveDoneHandler -> updateSlavesWaitingBgsave (replication.c:284-334).
void LegacyServer::bgsave_done() {
    dump_rdb_ = save_->rdb;
    dirty_ -= save_->dirty_before;  // backgroundSaveDoneHandler: dirty - dirty_before_bgsave
    last_save_unix_ = unix_time_ms() / 1000;
    last_save_seconds_ = last_save_unix_ - save_->started_unix;
    save_.reset();
    log_line("Background saving terminated with success");
    bool start = false;
    for (Client* s : slaves_) {
        if (s->repl == Repl::kWaitBgsaveStart) {  // :293-295
            start = true;
            s->repl = Repl::kWaitBgsaveEnd;
            s->stream_db = 0;
        } else if (s->repl == Repl::kWaitBgsaveEnd) {  // :296-317
            s->rdb = dump_rdb_;
            s->bulk_header = "$" + std::to_string(dump_rdb_->size()) + "\r\n";  // :239
            s->header_sent = 0;
            s->rdb_sent = 0;
            s->repl = Repl::kSendBulk;
            records_[s->record].rdb_bytes = dump_rdb_->size();
        }
        update_record(*s);
    }
    if (start) start_bgsave(options_.save_seconds, true);  // :320-333
}

// replicationCron's pings (replication.c:805-834).
void LegacyServer::replication_cron() {
    // The first cron run pings, then one every period.
    const auto now = Clock::now();
    if (next_ping_ && now < *next_ping_) return;
    next_ping_ = now + std::chrono::microseconds(static_cast<int64_t>(options_.ping_period_seconds * 1e6));
    for (Client* s : slaves_) {
        if (s->repl == Repl::kSendBulk) continue;  // :819
        LegacyReplica& rec = records_[s->record];
        if (s->repl == Repl::kOnline) {
            s->out += "*1\r\n$4\r\nPING\r\n";  // :822
            rec.pings++;
        } else {
            // :829: straight to the socket, around the output buffer held since the fork.
            if (s->attached) {
                s->sink += "\n";
            } else {
                [[maybe_unused]] ssize_t n = ::send(s->fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            }
            rec.newlines++;
        }
    }
}

void LegacyServer::log_line(const std::string& line) { log_.push_back(line); }

void LegacyServer::update_record(const Client& c) {
    if (c.record == SIZE_MAX) return;
    records_[c.record].state = repl_name(c.repl);
}

std::string LegacyServer::info(const std::string& section) const {
    // genRedisInfoString (redis.c:2032-2310): the server, persistence and replication
    // sections as 2.6.17 writes them (the other sections are left out), each after a blank
    // line but the first.
    std::string out;
    const bool all = section == "all" || section == "default";
    const int64_t now = unix_time_ms() / 1000;
    if (all || section == "server") {
        utsname u{};
        ::uname(&u);
        const int64_t up = now - started_unix_;
        out += "# Server\r\n"
               "redis_version:2.6.17\r\n"
               "redis_git_sha1:00000000\r\n"
               "redis_git_dirty:0\r\n"
               "redis_mode:standalone\r\n";
        out += std::string("os:") + u.sysname + " " + u.release + " " + u.machine + "\r\n";
        out += "arch_bits:64\r\nmultiplexing_api:epoll\r\ngcc_version:4.7.2\r\n";
        out += "process_id:" + std::to_string(::getpid()) + "\r\n";
        out += "run_id:" + run_id_ + "\r\n";
        out += "tcp_port:" + std::to_string(port_) + "\r\n";
        out += "uptime_in_seconds:" + std::to_string(up) + "\r\n";
        out += "uptime_in_days:" + std::to_string(up / 86400) + "\r\n";
        out += "hz:10\r\n";
        out += "lru_clock:" + std::to_string((now / 10) & ((1 << 22) - 1)) + "\r\n";
    }
    if (all || section == "persistence") {  // redis.c:2122-2150
        if (!out.empty()) out += "\r\n";
        out += "# Persistence\r\nloading:0\r\n";
        out += "rdb_changes_since_last_save:" + std::to_string(dirty_) + "\r\n";
        out += std::string("rdb_bgsave_in_progress:") + (save_ ? "1" : "0") + "\r\n";
        out += "rdb_last_save_time:" + std::to_string(last_save_unix_) + "\r\n";
        out += "rdb_last_bgsave_status:ok\r\n";
        out += "rdb_last_bgsave_time_sec:" + std::to_string(last_save_seconds_) + "\r\n";
        out += "rdb_current_bgsave_time_sec:" + std::to_string(save_ ? now - save_->started_unix : -1) + "\r\n";
        out += "aof_enabled:0\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n"
               "aof_last_rewrite_time_sec:-1\r\naof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:ok\r\n";
    }
    if (all || section == "replication") {  // redis.c:2236-2310
        if (!out.empty()) out += "\r\n";
        out += "# Replication\r\nrole:master\r\nconnected_slaves:" + std::to_string(slaves_.size()) + "\r\n";
        int id = 0;
        for (const Client* s : slaves_) {
            // anetPeerToString fails on a replica without a socket: skipped, as 2.6 skips one.
            if (s->fd < 0) continue;
            const char* state = s->repl == Repl::kSendBulk ? "send_bulk" : s->repl == Repl::kOnline ? "online" : "wait_bgsave";
            out += "slave" + std::to_string(id++) + ":127.0.0.1," + std::to_string(s->listening_port) + "," + state + "\r\n";
        }
    }
    return out;
}

// ---------------------------------------------------------------- the API (any thread)

void LegacyServer::post(std::function<void()> fn) {
    if (in_loop()) {
        fn();
        return;
    }
    auto t = std::make_shared<Task>();
    t->fn = std::move(fn);
    std::future<void> f = t->done.get_future();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopped_) throw std::runtime_error("legacy server stopped: " + error_);
        tasks_.push_back(t);
    }
    char b = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fds_[1], &b, 1);
    if (f.wait_for(std::chrono::duration<double>(kTaskTimeoutS)) != std::future_status::ready)
        throw std::runtime_error("legacy server: its loop did not answer within 10 s");
    f.get();
}

std::string LegacyServer::write(int db, const Command& cmd) {
    return write_all({{db, cmd}}).at(0);
}

std::vector<std::string> LegacyServer::write_all(const std::vector<std::pair<int, Command>>& cmds) {
    std::vector<std::string> replies;
    post([&] {
        for (const auto& [db, cmd] : cmds) {
            if (db < 0 || db >= kDbNum || cmd.empty() || lower(cmd[0]) == "sync")
                throw std::invalid_argument("legacy server: write() takes a db 0..15 and a command other than SYNC");
            Client& c = *api_client_;
            c.db = db;
            c.out.clear();
            process_command(c, cmd);
            replies.push_back(c.out);
            c.out.clear();
            c.close_after_reply = false;
        }
    });
    return replies;
}

std::string LegacyServer::bgsave(double seconds) {
    std::string r;
    post([&] {
        if (save_) {
            r = err("Background save already in progress");
        } else {
            start_bgsave(seconds, false);
            r = "+Background saving started\r\n";
        }
    });
    return r;
}

bool LegacyServer::bgsave_in_progress() {
    bool r = false;
    post([&] { r = save_ != nullptr; });
    return r;
}

void LegacyServer::set_save_seconds(double seconds) {
    post([&] { options_.save_seconds = seconds; });
}

int LegacyServer::attach_replica() {
    int number = 0;
    post([&] {
        Client& c = new_client(-1);
        c.attached = true;
        c.authenticated = true;
        process_command(c, {"SYNC"});
        number = records_[c.record].sync_number;
    });
    return number;
}

std::string LegacyServer::attached_bytes(int sync_number) {
    std::string r;
    post([&] {
        for (auto& [id, c] : clients_) {
            if (c->attached && c->record != SIZE_MAX && records_[c->record].sync_number == sync_number) r = c->sink;
        }
    });
    return r;
}

Keyspace LegacyServer::keyspace() {
    Keyspace ks;
    post([&] {
        for (int db = 0; db < kDbNum; ++db) {
            for (const auto& [k, v] : dbs_[static_cast<size_t>(db)]) {
                KeyEntry e;
                e.type = "string";
                e.value = quote_value(v);
                ks[{db, k}] = std::move(e);
            }
        }
    });
    return ks;
}

std::vector<LegacyReplica> LegacyServer::replicas() {
    std::vector<LegacyReplica> r;
    post([&] { r = records_; });
    return r;
}

LegacyReplica LegacyServer::replica(int sync_number) {
    std::vector<LegacyReplica> all = replicas();
    if (sync_number < 1 || static_cast<size_t>(sync_number) > all.size())
        throw std::runtime_error("legacy server: no SYNC number " + std::to_string(sync_number) + " (" +
                                 std::to_string(all.size()) + " so far)");
    return all[static_cast<size_t>(sync_number - 1)];
}

int LegacyServer::sync_count() { return static_cast<int>(replicas().size()); }

std::vector<std::string> LegacyServer::log() {
    std::vector<std::string> r;
    post([&] { r = log_; });
    return r;
}

int LegacyServer::log_count(const std::string& needle) {
    int n = 0;
    for (const auto& l : log())
        if (l.find(needle) != std::string::npos) n++;
    return n;
}

void LegacyServer::set_before_sync(SyncHook hook) {
    post([&] { before_sync_ = std::move(hook); });
}

void LegacyServer::set_after_sync(SyncHook hook) {
    post([&] { after_sync_ = std::move(hook); });
}

std::string LegacyServer::error() {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
}

}  // namespace psync::test
