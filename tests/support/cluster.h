// The usual topology: a SYNC-only Redis master, psync-proxy in front of it, Redis 7 replicas
// behind the proxy. Members are declared so that destruction stops the replicas, then the
// proxy, then the master, and finally handles the sandbox (kept and logs printed on failure).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"

namespace psync::test {

class ProxiedCluster {
public:
    ProxiedCluster();  // starts the (empty) master; the proxy is created, not started

    // Starts the master, fills dbs 0, 1 and 5 (keys_per_db each), starts the proxy and waits
    // for its first snapshot, then starts `replicas` replicas behind it and waits until each
    // is online in /status and equal to the master.
    void start(int replicas, int keys_per_db = 100);

    // Starts one more Redis 7 replica of the proxy (does not wait for it to sync).
    RedisServer& add_replica(const std::string& name, RedisServerOptions options = {});

    // Waits until every replica's keyspace equals the master's.
    void wait_replicas_equal(double timeout_s = 30);

    Sandbox sandbox;
    RedisServer master;
    std::unique_ptr<ProxyProcess> proxy;
    std::vector<std::unique_ptr<RedisServer>> replicas;

    static const std::vector<int> kDbs;  // {0, 1, 5}
};

}  // namespace psync::test
