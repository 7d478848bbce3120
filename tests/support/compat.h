// Helpers of the compatibility scenarios (tests/integration/compat_*.cpp): INFO parsing, the
// proxy's snapshot file, writes recorded as the tests make them.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/redis_client.h"

namespace psync::test {

class ProxyProcess;
class ScriptedReplica;

// "name:value" lines of an INFO reply, in order (section headers and blank lines left out).
std::vector<std::pair<std::string, std::string>> info_fields(const std::string& info);
// Field names in order, with "slaveN" turned into "slave<N>" so lists of replicas compare.
std::vector<std::string> info_field_names(const std::string& info);
// "ip=127.0.0.1,port=6380,state=online" -> {ip: ..., port: ..., state: ...}, keys in order.
std::vector<std::pair<std::string, std::string>> info_kv_list(const std::string& value);
// The slaveN line of INFO replication whose port= is `port` ({} if none).
std::map<std::string, std::string> info_slave(const std::string& info, int port);
bool is_integer(const std::string& s);

std::string read_file(const std::string& path);

// The bytes of the proxy's current snapshot file (<data dir>/snapshot-<replid>.rdb).
std::string proxy_snapshot_bytes(const ProxyProcess& proxy);

// Reads from `replica` until its stream reaches the proxy's master_repl_offset (as /status
// reports it once the replica has it all); returns that offset.
uint64_t read_until_proxy_offset(ScriptedReplica& replica, const ProxyProcess& proxy, double timeout_s = 15);

// Applies writes to a real server one at a time, SELECTing as needed, and records them as
// (db, command): what a replica of that server must receive.
class RecordingWriter {
public:
    explicit RecordingWriter(int port);
    void write(int db, const Command& cmd);
    const std::vector<std::pair<int, Command>>& writes() const { return writes_; }

private:
    RedisClient client_;
    int db_ = 0;
    std::vector<std::pair<int, Command>> writes_;
};

// Redis 2.4/2.8/4.0-style INFO reply bodies for scripted masters: a RESP bulk string.
std::string info_bulk(const std::string& body);

}  // namespace psync::test
