#include "tests/support/test_context.h"

#include <cctype>

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <exception>
#include <mutex>
#include <thread>

namespace psync::test {
namespace {

std::atomic<bool> g_failed{false};
std::mutex g_name_mutex;
std::string g_name;

// A test that writes to a socket its peer has closed must get EPIPE, not die.
[[maybe_unused]] const bool g_sigpipe_ignored = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
}();

}  // namespace

// Listens to doctest's events to know whether the running test case has failed.
struct FailureListener : doctest::IReporter {
    explicit FailureListener(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData& tc) override {
        g_failed = false;
        std::lock_guard lock(g_name_mutex);
        g_name = tc.m_name;
    }
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override { g_failed = true; }
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData& ad) override {
        if (ad.m_failed && !(ad.m_at & doctest::assertType::is_warn)) g_failed = true;
    }
    void log_message(const doctest::MessageData& md) override {
        if (!(md.m_severity & doctest::assertType::is_warn)) g_failed = true;
    }
    void test_case_skipped(const doctest::TestCaseData&) override {}
};

bool current_test_failed() { return g_failed || std::uncaught_exceptions() > 0; }

std::string current_test_name() {
    std::lock_guard lock(g_name_mutex);
    return g_name;
}

double wait_until(const std::string& what, double timeout_s,
                  const std::function<bool(std::string& state)>& done) {
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(timeout_s));
    std::string state;
    while (true) {
        bool ok = false;
        state.clear();
        try {
            ok = done(state);
        } catch (const std::exception& e) {
            state = std::string("exception: ") + e.what();
        }
        if (ok) return seconds_since(start);
        if (Clock::now() >= deadline) {
            FAIL("timed out after " << timeout_s << " s waiting for " << what
                                    << (state.empty() ? std::string() : "\n  last state: " + state));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
}

double wait_until(const std::string& what, double timeout_s, const std::function<bool()>& done) {
    return wait_until(what, timeout_s, [&](std::string&) { return done(); });
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t unix_time_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string upper(std::string s) {
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return s;
}

}  // namespace psync::test

REGISTER_LISTENER("psync-failure-tracker", 1, psync::test::FailureListener);
