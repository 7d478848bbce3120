// Test-wide helpers: failure tracking for the current doctest test case, and bounded waits.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace psync::test {

using Clock = std::chrono::steady_clock;

// True once the running test case has a failed assertion, or while an exception unwinds it.
// Harness destructors use it to decide whether to keep temp directories and print logs.
bool current_test_failed();

// Name of the running doctest test case ("" outside a test).
std::string current_test_name();

// Polls `done` every 25 ms until it returns true; FAILs the test when `timeout_s` passes.
// `done` may write a description of the current state into its argument; the last one is
// printed on timeout. Exceptions thrown by `done` count as "not yet" and are reported.
// Returns the seconds waited.
double wait_until(const std::string& what, double timeout_s,
                  const std::function<bool(std::string& state)>& done);

// Same, for predicates that have nothing to report.
double wait_until(const std::string& what, double timeout_s, const std::function<bool()>& done);

void sleep_ms(int ms);

// Seconds since `start`, as a double.
double seconds_since(Clock::time_point start);

// Milliseconds since the Unix epoch (wall clock, for TTL comparisons).
int64_t unix_time_ms();

// ASCII upper case (command names).
std::string upper(std::string s);

}  // namespace psync::test
