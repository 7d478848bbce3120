// The status page (GET /) as a person sees it: rendered by headless Chromium from Debian,
// with a screenshot kept in the build's test-artifacts directory.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/cluster.h"
#include "tests/support/process.h"
#include "tests/support/test_context.h"

using namespace psync::test;

namespace {

// Headless Chromium with the flags that keep it off the network.
std::vector<std::string> chromium(const std::string& profile) {
    return {find_executable("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + profile,
            // Lets the page's fetch('/status') finish before the DOM or the picture is taken.
            "--virtual-time-budget=5000"};
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

TEST_CASE("status page: Chromium renders the upstream state and the replicas from /status") {
    ProxiedCluster c;
    c.start(2, 20);
    const std::string url = "http://127.0.0.1:" + std::to_string(c.proxy->status_port()) + "/";

    // The DOM after the page's script ran.
    const std::string dom_path = c.sandbox.subdir("chromium") + "/dom.html";
    std::vector<std::string> dump = chromium(c.sandbox.subdir("profile-dom"));
    dump.push_back("--dump-dom");
    dump.push_back(url);
    REQUIRE(run_command(dump, dom_path, 60) == 0);
    const std::string dom = read_file(dom_path);
    CHECK_MESSAGE(dom.find(R"(id="upstream-state" class="ok">streaming<)") != std::string::npos, dom);
    CHECK_MESSAGE(std::regex_search(dom, std::regex(R"(id="replica-count"[^>]*>2<)")), dom);
    for (const auto& r : c.replicas) {
        // The replica's row: its listening port, then its state.
        const std::string row = "<td>" + std::to_string(r->port()) + R"(</td><td class="ok">online</td>)";
        CHECK_MESSAGE(dom.find(row) != std::string::npos, "no online row for " << r->name() << " in\n" << dom);
    }
    // The page's error line stays empty: every fetch of /status worked.
    CHECK_MESSAGE(std::regex_search(dom, std::regex(R"(<div id="error"[^>]*></div>)")), dom);

    // The screenshot, for a person to look at.
    std::filesystem::create_directories(PSYNC_TEST_ARTIFACTS_DIR);
    const std::string png = std::string(PSYNC_TEST_ARTIFACTS_DIR) + "/status-page.png";
    std::filesystem::remove(png);
    std::vector<std::string> shot = chromium(c.sandbox.subdir("profile-shot"));
    shot.push_back("--window-size=1200,800");
    shot.push_back("--screenshot=" + png);
    shot.push_back(url);
    REQUIRE(run_command(shot, c.sandbox.subdir("chromium") + "/screenshot.log", 60) == 0);
    REQUIRE(std::filesystem::exists(png));
    CHECK(std::filesystem::file_size(png) > 10000);  // a real picture, not an empty page
    MESSAGE("status page screenshot: " << png);
}
