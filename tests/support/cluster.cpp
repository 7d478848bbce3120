#include "tests/support/cluster.h"

#include "tests/support/keyspace.h"
#include "tests/support/workload.h"

namespace psync::test {

const std::vector<int> ProxiedCluster::kDbs = {0, 1, 5};

ProxiedCluster::ProxiedCluster() : master(sandbox, "master", sync_only_master_options()) {
    master.start();  // the proxy needs the master's port
    proxy = std::make_unique<ProxyProcess>(sandbox, "proxy", master.port());
}

void ProxiedCluster::start(int replica_count, int keys_per_db) {
    RedisClient c = master.client();
    for (int db : kDbs) fill_dataset(c, db, keys_per_db);
    proxy->start();
    proxy->wait_snapshot();
    for (int i = 0; i < replica_count; ++i) add_replica("replica" + std::to_string(i + 1));
    for (auto& r : replicas) proxy->wait_replica_online(r->port());
    wait_replicas_equal();
}

RedisServer& ProxiedCluster::add_replica(const std::string& name, RedisServerOptions options) {
    options.replicaof_port = proxy->port();
    replicas.push_back(std::make_unique<RedisServer>(sandbox, name, std::move(options)));
    replicas.back()->start();
    return *replicas.back();
}

void ProxiedCluster::wait_replicas_equal(double timeout_s) {
    for (auto& r : replicas) wait_keyspace_equal(master, *r, timeout_s);
}

}  // namespace psync::test
