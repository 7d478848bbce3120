#include "tests/support/compat.h"

#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "tests/support/proxy.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"

namespace psync::test {

std::vector<std::pair<std::string, std::string>> info_fields(const std::string& info) {
    std::vector<std::pair<std::string, std::string>> out;
    std::istringstream in(info);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        size_t colon = line.find(':');
        if (colon == std::string::npos) {
            out.emplace_back(line, "(no colon)");
            continue;
        }
        out.emplace_back(line.substr(0, colon), line.substr(colon + 1));
    }
    return out;
}

std::vector<std::string> info_field_names(const std::string& info) {
    std::vector<std::string> out;
    for (const auto& [name, value] : info_fields(info)) {
        if (name.rfind("slave", 0) == 0 && name.size() > 5 && is_integer(name.substr(5))) out.push_back("slave<N>");
        else out.push_back(name);
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> info_kv_list(const std::string& value) {
    std::vector<std::pair<std::string, std::string>> out;
    std::istringstream in(value);
    std::string item;
    while (std::getline(in, item, ',')) {
        size_t eq = item.find('=');
        if (eq == std::string::npos) out.emplace_back(item, "");
        else out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    }
    return out;
}

std::map<std::string, std::string> info_slave(const std::string& info, int port) {
    for (const auto& [name, value] : info_fields(info)) {
        if (name.rfind("slave", 0) != 0 || !is_integer(name.substr(5))) continue;
        std::map<std::string, std::string> kv;
        for (const auto& [k, v] : info_kv_list(value)) kv[k] = v;
        if (kv["port"] == std::to_string(port)) return kv;
    }
    return {};
}

bool is_integer(const std::string& s) {
    size_t start = (!s.empty() && s[0] == '-') ? 1 : 0;
    return s.size() > start && s.find_first_not_of("0123456789", start) == std::string::npos;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string proxy_snapshot_bytes(const ProxyProcess& proxy) {
    const std::string replid = json_str(proxy.status(), "/snapshot/replid");
    return read_file(proxy.data_dir() + "/snapshot-" + replid + ".rdb");
}

uint64_t read_until_proxy_offset(ScriptedReplica& replica, const ProxyProcess& proxy, double timeout_s) {
    uint64_t offset = 0;
    wait_until("the scripted replica to receive the stream up to the proxy's offset", timeout_s,
               [&](std::string& state) {
                   offset = static_cast<uint64_t>(json_int(proxy.status(), "/proxy/offset"));
                   replica.read_for(0.05);
                   state = "proxy offset " + std::to_string(offset) + ", replica stream up to " +
                           std::to_string(replica.stream_end()) + (replica.closed() ? " (closed)" : "");
                   return replica.stream_end() == offset;
               });
    return offset;
}

RecordingWriter::RecordingWriter(int port) : client_(RedisClient::connect(port)) {}

void RecordingWriter::write(int db, const Command& cmd) {
    if (db != db_) {
        client_.must({"SELECT", std::to_string(db)});
        db_ = db;
    }
    client_.must(cmd);
    writes_.emplace_back(db, cmd);
}

std::string info_bulk(const std::string& body) {
    return "$" + std::to_string(body.size()) + "\r\n" + body + "\r\n";
}

}  // namespace psync::test
