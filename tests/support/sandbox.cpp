#include "tests/support/sandbox.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <system_error>

#include "tests/support/test_context.h"

namespace fs = std::filesystem;

namespace psync::test {
namespace {

std::string sanitized(const std::string& name) {
    std::string out;
    for (char c : name) {
        if (std::isalnum(static_cast<unsigned char>(c))) out += c;
        else if (!out.empty() && out.back() != '-') out += '-';
        if (out.size() >= 40) break;
    }
    while (!out.empty() && out.back() == '-') out.pop_back();
    return out.empty() ? "test" : out;
}

}  // namespace

Sandbox::Sandbox() {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = (tmp && *tmp) ? tmp : "/tmp";
    std::string templ = base + "/psync-it-" + sanitized(current_test_name()) + "-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed under " + base);
    root_ = buf.data();
}

Sandbox::~Sandbox() {
    if (current_test_failed()) {
        std::cerr << "\n==== test failed: keeping " << root_ << "\n";
        print_logs();
        return;
    }
    const char* keep = std::getenv("PSYNC_IT_KEEP");  // debugging aid: keep sandboxes of passing tests too
    if (keep && *keep && std::string(keep) != "0") {
        std::cerr << "PSYNC_IT_KEEP: keeping " << root_ << "\n";
        return;
    }
    std::error_code ec;
    fs::remove_all(root_, ec);
}

std::string Sandbox::subdir(const std::string& name) {
    std::string path = root_ + "/" + name;
    fs::create_directories(path);
    return path;
}

void Sandbox::watch_log(const std::string& label, const std::string& path) {
    logs_.emplace_back(label, path);
}

void Sandbox::print_logs(int lines) const {
    for (const auto& [label, path] : logs_) {
        std::cerr << "---- " << label << ": last " << lines << " lines of " << path << "\n"
                  << tail_file(path, lines) << "---- end of " << label << "\n";
    }
    std::cerr.flush();
}

std::string tail_file(const std::string& path, int lines) {
    std::ifstream f(path);
    if (!f) return "(cannot read)\n";
    std::deque<std::string> last;
    std::string line;
    while (std::getline(f, line)) {
        last.push_back(line);
        if (static_cast<int>(last.size()) > lines) last.pop_front();
    }
    std::string out;
    for (const auto& l : last) out += l + "\n";
    return out;
}

}  // namespace psync::test
