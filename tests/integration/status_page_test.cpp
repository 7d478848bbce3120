// The status page (GET /) as a person sees it: rendered by headless Chromium from Debian,
// with a screenshot kept in the build's test-artifacts directory.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/cluster.h"
#include "tests/support/http.h"
#include "tests/support/workload.h"
#include "tests/support/process.h"
#include "tests/support/sandbox.h"
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

// The DOM of the page at url after its script ran.
std::string page_dom(Sandbox& sandbox, const std::string& url) {
    const std::string dom_path = sandbox.subdir("chromium") + "/dom.html";
    std::vector<std::string> dump = chromium(sandbox.subdir("profile-dom"));
    dump.push_back("--dump-dom");
    dump.push_back(url);
    REQUIRE(run_command(dump, dom_path, 60) == 0);
    return read_file(dom_path);
}

// A screenshot of the page into the test artifacts, for a person to look at; at least
// min_bytes of PNG (a real picture, not an empty page).
void screenshot(Sandbox& sandbox, const std::string& url, const std::string& name, const std::string& size,
                uintmax_t min_bytes) {
    std::filesystem::create_directories(PSYNC_TEST_ARTIFACTS_DIR);
    const std::string png = std::string(PSYNC_TEST_ARTIFACTS_DIR) + "/" + name;
    std::filesystem::remove(png);
    std::vector<std::string> shot = chromium(sandbox.subdir("profile-shot"));
    shot.push_back("--window-size=" + size);
    shot.push_back("--screenshot=" + png);
    shot.push_back(url);
    REQUIRE(run_command(shot, sandbox.subdir("chromium") + "/screenshot.log", 60) == 0);
    REQUIRE(std::filesystem::exists(png));
    CHECK(std::filesystem::file_size(png) > min_bytes);
    MESSAGE("status page screenshot: " << png);
}

}  // namespace

TEST_CASE("status page: Chromium renders the upstream state and the replicas from /status") {
    ProxiedCluster c;
    c.start(2, 20);
    const std::string url = "http://127.0.0.1:" + std::to_string(c.proxy->status_port()) + "/";

    // The DOM after the page's script ran.
    const std::string dom = page_dom(c.sandbox, url);
    CHECK_MESSAGE(dom.find(R"(id="upstream-state" class="ok">streaming<)") != std::string::npos, dom);
    CHECK_MESSAGE(std::regex_search(dom, std::regex(R"(id="replica-count"[^>]*>2<)")), dom);
    for (const auto& r : c.replicas) {
        // The replica's row: its listening port, then its state.
        const std::string row = "<td>" + std::to_string(r->port()) + R"(</td><td class="ok">online</td>)";
        CHECK_MESSAGE(dom.find(row) != std::string::npos, "no online row for " << r->name() << " in\n" << dom);
    }
    // The page's error line stays empty: every fetch of /status worked.
    CHECK_MESSAGE(std::regex_search(dom, std::regex(R"(<div id="error"[^>]*></div>)")), dom);

    screenshot(c.sandbox, url, "status-page.png", "1200,800", 10000);
}

TEST_CASE("status page: the last 15 minutes plotted from /history: the ingest rate and each replica's lag, drawn in Chromium") {
    ProxiedCluster c;
    c.start(2, 20);
    {
        BackgroundWriter writer(c.master.port(), ProxiedCluster::kDbs);
        sleep_ms(4500);  // a few one-second samples with writes in them
        writer.stop();
        CHECK_MESSAGE(writer.error().empty(), writer.error());
    }
    // What the page plots: one sample a second, the rate seen, the replicas named.
    const HttpResponse h = http_get(c.proxy->status_port(), "/history", 3);
    REQUIRE(h.status == 200);
    const nlohmann::json hist = nlohmann::json::parse(h.body);
    REQUIRE(hist["samples"].size() >= 4);
    double peak = 0;
    for (const auto& s : hist["samples"]) {
        if (s["ingest_bytes_per_second"].is_number()) peak = std::max(peak, s["ingest_bytes_per_second"].get<double>());
    }
    CHECK(peak > 1000);  // the writes went through at more than 1 KB/s
    const auto& last = hist["samples"].back()["replicas"];
    CHECK(last.size() == 2);

    const std::string url = "http://127.0.0.1:" + std::to_string(c.proxy->status_port()) + "/";
    const std::string dom = page_dom(c.sandbox, url);
    // A line with several points for the ingest, and one per replica in each lag chart.
    std::smatch m;
    CHECK_MESSAGE(std::regex_search(dom, m, std::regex(R"re(<polyline points="[^"]+" stroke="[^"]+" data-name="ingest" data-points="(\d+)")re")),
                  dom);
    if (!m.empty()) CHECK(std::stoi(m[1].str()) >= 3);
    for (const auto& r : c.replicas) {
        const std::regex line(R"re(<polyline points="[^"]+" stroke="[^"]+" data-name="127\.0\.0\.1:)re" +
                              std::to_string(r->port()) + R"re(" data-points="(\d+)")re");
        auto begin = std::sregex_iterator(dom.begin(), dom.end(), line);
        int charts = 0;
        for (auto it = begin; it != std::sregex_iterator(); ++it) charts += std::stoi((*it)[1].str()) >= 3 ? 1 : 0;
        CHECK_MESSAGE(charts == 2, r->name() << ": lines in the two lag charts, in\n" << dom);
    }
    CHECK_MESSAGE(std::regex_search(dom, std::regex(R"(<div id="error"[^>]*></div>)")), dom);

    screenshot(c.sandbox, url, "status-page-plots.png", "1400,1100", 20000);
}
