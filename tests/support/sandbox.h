// A per-test temporary directory tree holding every server's data and logs.
//
// Declare it FIRST in a test (or as the first member of a fixture), so that it is destroyed
// after the servers living in it. On success it is removed; if the test failed, it is kept,
// its path is printed, and the tail of every registered log is printed. Set PSYNC_IT_KEEP=1
// to keep the directories of passing tests too.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace psync::test {

class Sandbox {
public:
    Sandbox();
    Sandbox(const Sandbox&) = delete;
    Sandbox& operator=(const Sandbox&) = delete;
    ~Sandbox();

    const std::string& root() const { return root_; }

    // Creates (if needed) and returns root()/name.
    std::string subdir(const std::string& name);

    // Registers a log file to print (its last lines) if the test fails.
    void watch_log(const std::string& label, const std::string& path);

    // Prints the tails of all watched logs now (e.g. before a FAIL with a long explanation).
    void print_logs(int lines = 40) const;

private:
    std::string root_;
    std::vector<std::pair<std::string, std::string>> logs_;
};

// Last `lines` lines of a text file ("" if it cannot be read).
std::string tail_file(const std::string& path, int lines);

}  // namespace psync::test
