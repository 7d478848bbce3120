// Limits a client can push the proxy against, with real processes on loopback: the process's
// file descriptors (RLIMIT_NOFILE), the replies a client pipelines and never reads, and the
// number of connections to the status port. Past each: a clear answer or error to the
// client, a bounded number of log lines, bounded CPU and memory, and recovery once the
// clients are gone.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>

#include "tests/support/cluster.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// What one connection got: "+PONG" to a PING, the proxy's refusal line, or "(no answer)".
std::string ping_or_refusal(ScriptedReplica& conn) {
    std::string early = conn.read_for(0.05);  // a refusal comes unasked, right after accept
    if (!early.empty()) return early.substr(0, early.find("\r\n"));
    try {
        conn.send("PING\r\n");
        return conn.read_line(3);
    } catch (const std::exception&) {
        std::string late = conn.take_buffered();
        return late.empty() ? "(no answer)" : late.substr(0, late.find("\r\n"));
    }
}

}  // namespace

TEST_CASE("limits: out of file descriptors: no busy loop, few log lines, a clear refusal, then new replicas are served again") {
    ProxiedCluster c;
    constexpr int kFdLimit = 32;
    ProxyOptions options;
    options.open_files_limit = kFdLimit;
    options.log_level = "info";
    c.proxy = std::make_unique<ProxyProcess>(c.sandbox, "proxy", c.master.port(), options);
    c.start(0, 20);
    const pid_t pid = c.proxy->process().pid();
    const std::string log = c.proxy->log_path();
    const int fds_at_start = open_fds(pid);
    REQUIRE_MESSAGE((fds_at_start > 0 && fds_at_start < kFdLimit - 4),
                    "the proxy uses " << fds_at_start << " descriptors at start: no room for clients");

    // More clients than descriptors left; connect() succeeds through the listen backlog.
    constexpr int kClients = 40;
    std::vector<std::unique_ptr<ScriptedReplica>> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(std::make_unique<ScriptedReplica>(c.proxy->port()));
    wait_until("the proxy at its descriptor limit", 10, [&](std::string& state) {
        state = std::to_string(open_fds(pid)) + " fds open";
        return open_fds(pid) >= kFdLimit - 1;
    });

    // Held for 3 s: the proxy idles (no busy loop on the listening socket) and logs a few lines.
    const double cpu_before = cpu_seconds(pid);
    sleep_ms(3000);
    const double cpu_used = cpu_seconds(pid) - cpu_before;
    const int emfile_lines = count_log_lines(log, "Too many open files");
    INFO("CPU " << cpu_used << " s in 3 s with " << kClients << " clients held; " << emfile_lines
                << " log lines about EMFILE; first ones:\n" << grep_log(log, "Too many open files", 3));
    MESSAGE("CPU " << cpu_used << " s in 3 s with " << kClients << " clients held; " << emfile_lines
                   << " log lines about EMFILE");
    CHECK_MESSAGE(cpu_used < 0.5, "the proxy used " << cpu_used << " s of CPU in 3 s while out of descriptors");
    CHECK_MESSAGE((emfile_lines >= 1 && emfile_lines <= 3), emfile_lines << " log lines about EMFILE in 3 s");

    // Every client got an answer: served (PONG) or refused with an error, none left hanging.
    int served = 0, refused = 0;
    std::vector<std::string> others;
    for (auto& conn : clients) {
        const std::string got = ping_or_refusal(*conn);
        if (got == "+PONG") {
            ++served;
        } else if (got.rfind("-ERR max number of clients reached", 0) == 0) {
            ++refused;
        } else {
            others.push_back(got);
        }
    }
    CHECK_MESSAGE(others.empty(), others.size() << " clients got neither PONG nor a refusal, e.g. " << others.at(0));
    CHECK_MESSAGE(served >= 1, "no client was served");
    CHECK_MESSAGE(refused >= kClients - kFdLimit, "only " << refused << " clients were refused");
    // Meanwhile the status port answers too (503: it is out of descriptors as well, or 200).
    try {
        const HttpResponse r = http_get(c.proxy->status_port(), "/status", 3);
        CHECK_MESSAGE((r.status == 503 || r.status == 200), r.status << " " << r.body);
    } catch (const std::exception& e) {
        FAIL_CHECK("GET /status while out of descriptors: " << std::string(e.what()));
    }

    // The clients leave: a real Redis 7 replica is accepted and gets the master's data.
    clients.clear();
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    RedisServer& r = c.add_replica("replica-after");
    c.proxy->wait_replica_online(r.port(), 30);
    wait_keyspace_equal(c.master, r, 30);
    CHECK(count_log_lines(log, "Too many open files") <= 4);
    const json s = c.proxy->status();
    CHECK(json_int(s, "/counters/rejected_connections") >= refused);
    check_clean_shutdown(*c.proxy);
}

namespace {

// A client that pipelines `request` over and over and never reads a reply: a non-blocking
// loopback socket written until the kernel takes no more.
class Hog {
public:
    explicit Hog(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
            throw std::runtime_error(std::string("hog: connect failed: ") + std::strerror(errno));
    }
    ~Hog() {
        if (fd_ >= 0) ::close(fd_);
    }
    Hog(const Hog&) = delete;
    Hog& operator=(const Hog&) = delete;
    // Writes copies of `chunk` (whole requests) while the socket takes them, at most
    // max_bytes in all; a chunk cut by a full socket is finished by the next push.
    void push(const std::string& chunk, uint64_t max_bytes) {
        while (sent_ < max_bytes) {
            ssize_t n = ::send(fd_, chunk.data() + pos_, chunk.size() - pos_, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n <= 0) return;
            sent_ += static_cast<uint64_t>(n);
            pos_ = (pos_ + static_cast<size_t>(n)) % chunk.size();
        }
    }
    uint64_t sent() const { return sent_; }

private:
    int fd_ = -1;
    uint64_t sent_ = 0;
    size_t pos_ = 0;
};

// One bulk-string reply ($<len>, the bytes, CRLF).
std::string bulk_reply(ScriptedReplica& conn) {
    std::string bytes = conn.read_payload(10);
    if (conn.read_exact(2, 10) != "\r\n") throw std::runtime_error("no CRLF after a bulk reply");
    return bytes;
}

}  // namespace

TEST_CASE("limits: clients that pipeline INFO and never read hold the proxy within clients x 1 MB, and a client that reads gets every reply in order") {
    ProxiedCluster c;
    // Freed memory held in AddressSanitizer's quarantine would look like growth.
    std::optional<ScopedEnv> asan;
    asan.emplace("ASAN_OPTIONS", asan_options_for_memory_measurement());
    c.start(0, 20);
    asan.reset();
    const pid_t pid = c.proxy->process().pid();
    {
        ScriptedReplica warm(c.proxy->port());  // the INFO code paths once, before the baseline
        warm.send("INFO\r\n");
        bulk_reply(warm);
    }
    const long rss_base = rss_kb(pid);

    // 20 clients pipeline INFO (about 1 KB of reply for 6 bytes of request) and never read.
    constexpr int kHogs = 20;
    std::string chunk;
    while (chunk.size() < 64 * 1024) chunk += "INFO\r\n";
    std::vector<std::unique_ptr<Hog>> hogs;
    for (int i = 0; i < kHogs; ++i) hogs.push_back(std::make_unique<Hog>(c.proxy->port()));
    // One more pipelines PING <i> and INFO alternately, from a thread, and reads nothing yet.
    constexpr int kPairs = 20000;
    ScriptedReplica reader(c.proxy->port());
    std::string requests;
    for (int i = 0; i < kPairs; ++i) requests += "PING " + std::to_string(i) + "\r\nINFO\r\n";
    std::string send_error;
    std::thread sender([&] {
        try {
            reader.send(requests);
        } catch (const std::exception& e) {
            send_error = e.what();
        }
    });
    long rss_max = 0;
    double status_max_s = 0;  // the liveness probe's wait while they pipeline
    std::string status_error;
    const auto start = Clock::now();
    while (seconds_since(start) < 3.0) {
        for (auto& h : hogs) h->push(chunk, 8 << 20);
        rss_max = std::max(rss_max, rss_kb(pid));
        const auto asked = Clock::now();
        try {
            const HttpResponse st = http_get(c.proxy->status_port(), "/status", 10);
            if (st.status != 200 && status_error.empty()) status_error = "/status answered " + std::to_string(st.status);
        } catch (const std::exception& e) {
            if (status_error.empty()) status_error = std::string("/status: ") + e.what();
        }
        status_max_s = std::max(status_max_s, seconds_since(asked));
        sleep_ms(50);
    }
    // One client's pipeline gets a bounded share of each turn of the loop: the probe
    // is not kept waiting behind its replies (seconds before that bound existed).
    MESSAGE("/status answered within " << status_max_s << " s at most while the clients pipelined INFO");
    CHECK_MESSAGE(status_error.empty(), status_error);
    CHECK_MESSAGE(status_max_s < 3.0, "/status took " << status_max_s << " s while clients pipelined INFO");
    uint64_t hog_bytes = 0;
    for (auto& h : hogs) hog_bytes += h->sent();
    // The cap is 1 MB of replies per client (plus one reply), and what one read brings.
    const long bound_kb = rss_base + (kHogs + 1) * 2 * 1024 + 8 * 1024;
    INFO("proxy RSS " << rss_base << " KB at rest, at most " << rss_max << " KB with " << kHogs + 1
                      << " clients not reading (bound " << bound_kb << " KB); the hogs pushed " << hog_bytes / 1024
                      << " KB of INFO requests");
    MESSAGE("proxy RSS " << rss_base << " KB at rest, at most " << rss_max << " KB with " << kHogs + 1
                         << " clients not reading (bound " << bound_kb << " KB); hogs pushed " << hog_bytes / 1024 << " KB");
    CHECK_MESSAGE(hog_bytes > static_cast<uint64_t>(kHogs) * 64 * 1024, "the hogs could not send much");
    CHECK_MESSAGE(rss_max < bound_kb, "the proxy grew from " << rss_base << " KB to " << rss_max << " KB");

    // The reader now reads: every reply, in order, none lost, though the proxy stopped
    // dispatching its commands for a while.
    int pings = 0, infos = 0;
    std::string wrong;
    // (A failed read is recorded, not thrown past the sender thread, which must be joined.)
    try {
        for (int i = 0; i < kPairs && wrong.empty(); ++i) {
            const std::string ping = bulk_reply(reader);
            if (ping != std::to_string(i)) {
                wrong = "reply " + std::to_string(2 * i) + ": expected PING's " + std::to_string(i) + ", got " +
                        ping.substr(0, 60);
                break;
            }
            ++pings;
            const std::string info = bulk_reply(reader);
            if (info.find("# Replication") == std::string::npos) {
                wrong = "reply " + std::to_string(2 * i + 1) + ": expected INFO, got " + info.substr(0, 60);
                break;
            }
            ++infos;
        }
    } catch (const std::exception& e) {
        wrong = "after " + std::to_string(pings) + " PING and " + std::to_string(infos) + " INFO replies: " + e.what();
    }
    sender.join();
    CHECK_MESSAGE(send_error.empty(), send_error);
    CHECK_MESSAGE(wrong.empty(), wrong);
    CHECK(pings == kPairs);
    CHECK(infos == kPairs);
    // Nothing more than the replies asked for.
    CHECK(reader.read_for(0.2).empty());

    // The proxy still serves: a real replica gets the data.
    hogs.clear();
    RedisServer& r = c.add_replica("replica1");
    c.proxy->wait_replica_online(r.port());
    wait_keyspace_equal(c.master, r);
    check_clean_shutdown(*c.proxy);
}

TEST_CASE("limits: the status port: past 64 open connections a new one gets 503 at once, and idle ones are closed after 5 s") {
    ProxiedCluster c;
    c.start(1, 10);
    // 64 connections that never send a request.
    std::vector<std::unique_ptr<ScriptedReplica>> idle;
    for (int i = 0; i < 64; ++i) idle.push_back(std::make_unique<ScriptedReplica>(c.proxy->status_port()));
    sleep_ms(300);  // all accepted
    const auto t0 = Clock::now();
    const HttpResponse busy = http_get(c.proxy->status_port(), "/status", 3);
    CHECK_MESSAGE(busy.status == 503, busy.status << " " << busy.body);
    CHECK_MESSAGE(busy.body.find("too many status connections") != std::string::npos, busy.body);
    CHECK(seconds_since(t0) < 1.0);
    CHECK(count_log_lines(c.proxy->log_path(), "status connections open at once", true) == 1);
    // The replica port is not affected.
    ScriptedReplica client(c.proxy->port());
    client.send("PING\r\n");
    CHECK(client.read_line(5) == "+PONG");
    // The proxy closes the idle ones after its 5 s request timeout; then /status answers.
    int closed = 0;
    for (auto& conn : idle) closed += conn->wait_closed(8) ? 1 : 0;
    CHECK(closed == 64);
    const HttpResponse ok = http_get(c.proxy->status_port(), "/status", 3);
    CHECK_MESSAGE(ok.status == 200, ok.status << " " << ok.body);
    RedisClient m = c.master.client();
    write_burst(m, ProxiedCluster::kDbs, 1);
    c.wait_replicas_equal();
    check_clean_shutdown(*c.proxy);
}
