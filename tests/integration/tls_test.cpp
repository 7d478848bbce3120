// TLS on the replica port (--tls-port): real Redis 7 replicas with `tls-replication yes`
// follow a SYNC-only master through it, full and partial resyncs; a client whose certificate
// is not signed by the CA, one with none, one that does not speak TLS: refused, logged,
// nothing sent. Certificates are made here with `openssl req`.
#include <doctest/doctest.h>

#include <signal.h>

#include "tests/support/compat.h"
#include "tests/support/fault_helpers.h"
#include "tests/support/http.h"
#include "tests/support/keyspace.h"
#include "tests/support/ports.h"
#include "tests/support/process.h"
#include "tests/support/proxy.h"
#include "tests/support/redis_server.h"
#include "tests/support/sandbox.h"
#include "tests/support/scripted_replica.h"
#include "tests/support/test_context.h"
#include "tests/support/workload.h"

using namespace psync::test;
using nlohmann::json;

namespace {

// A CA, the proxy's certificate for 127.0.0.1, a replica's certificate signed by the CA, and
// a self-signed one (not signed by the CA), in dir.
struct Certs {
    std::string dir, ca, server_crt, server_key, client_crt, client_key, rogue_crt, rogue_key;
    explicit Certs(const std::string& d) : dir(d) {
        ca = dir + "/ca.crt";
        server_crt = dir + "/server.crt";
        server_key = dir + "/server.key";
        client_crt = dir + "/client.crt";
        client_key = dir + "/client.key";
        rogue_crt = dir + "/rogue.crt";
        rogue_key = dir + "/rogue.key";
        const std::string log = dir + "/openssl.log";
        const std::string openssl = find_executable("openssl");
        auto run = [&](std::vector<std::string> argv) {
            argv[0] = openssl;
            REQUIRE(run_command(argv, log, 60) == 0);
        };
        run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/ca.key", "-out", ca, "-days",
             "2", "-subj", "/CN=psync-proxy test CA"});
        run({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", server_key, "-out", dir + "/server.csr",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
        run({"openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", ca, "-CAkey", dir + "/ca.key",
             "-CAcreateserial", "-out", server_crt, "-days", "2", "-copy_extensions", "copy"});
        run({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", client_key, "-out", dir + "/client.csr",
             "-subj", "/CN=replica"});
        run({"openssl", "x509", "-req", "-in", dir + "/client.csr", "-CA", ca, "-CAkey", dir + "/ca.key",
             "-CAcreateserial", "-out", client_crt, "-days", "2"});
        run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rogue_key, "-out", rogue_crt,
             "-days", "2", "-subj", "/CN=rogue"});
    }
};

RedisServerOptions tls_replica_options(int tls_port, const Certs& c) {
    RedisServerOptions o = replica_options(tls_port);
    o.extra_config = {"tls-replication yes", "tls-cert-file " + c.client_crt, "tls-key-file " + c.client_key,
                      "tls-ca-cert-file " + c.ca};
    return o;
}

// What `openssl s_client` got from the TLS port after sending PING (its stdout), and its log.
std::string s_client(Sandbox& sandbox, int port, const Certs& c, const std::string& cert, const std::string& key,
                     const std::string& name) {
    const std::string out = sandbox.subdir("s_client") + "/" + name + ".out";
    std::vector<std::string> argv = {find_executable("sh"), "-c",
                                     "(printf 'PING\\r\\n'; sleep 1) | openssl s_client -quiet -no_ign_eof -connect 127.0.0.1:" +
                                         std::to_string(port) + " -CAfile " + c.ca +
                                         (cert.empty() ? std::string() : " -cert " + cert + " -key " + key) +
                                         " 2>" + out + ".err"};
    run_command(argv, out, 20);
    return read_file(out);
}

}  // namespace

TEST_CASE("tls: Redis 7 replicas with tls-replication yes follow a SYNC-only master through --tls-port, full and partial resyncs; refused certificates get nothing") {
    Sandbox sandbox;
    Certs certs(sandbox.subdir("certs"));
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    RedisClient m = master.client();
    write_burst(m, {0, 1, 5}, 100);
    // 16 MB of values: the snapshot goes out in many 64 KB chunks, some of them cut by a full
    // socket (SSL_write retried with the same bytes).
    const std::string big(64 * 1024, 'b');
    for (int i = 0; i < 256; ++i) m.must({"SET", "big:" + std::to_string(i), big});
    const int tls_port = pick_free_port();
    ProxyOptions po;
    po.extra_args = {"--tls-port", std::to_string(tls_port), "--tls-cert-file", certs.server_crt, "--tls-key-file",
                     certs.server_key, "--tls-ca-cert-file", certs.ca, "--tls-auth-clients", "yes"};
    ProxyProcess proxy(sandbox, "proxy", master.port(), po);
    proxy.start();
    proxy.wait_snapshot();

    RedisServer r1(sandbox, "replica1", tls_replica_options(tls_port, certs));
    RedisServer r2(sandbox, "replica2", tls_replica_options(tls_port, certs));
    r1.start();
    r2.start();
    {
        BackgroundWriter writer(master.port(), {0, 1, 5});
        proxy.wait_replica_online(r1.port());
        proxy.wait_replica_online(r2.port());
        writer.wait_more_rounds(200);
        writer.stop();
        CHECK_MESSAGE(writer.error().empty(), writer.error());
    }
    wait_keyspace_equal(master, r1, 30);
    wait_keyspace_equal(master, r2, 30);
    const json s = proxy.status();
    CHECK(json_int(s, "/tls/port") == tls_port);
    for (const auto& rep : s["replicas"]) CHECK(rep["tls"] == true);
    MESSAGE("kernel TLS: " << json_str(s, "/tls/ktls"));

    // A replica whose link drops continues over TLS (+CONTINUE).
    r1.client().must({"CLIENT", "KILL", "TYPE", "master"});
    write_burst(m, {0, 1, 5}, 20);
    wait_keyspace_equal(master, r1, 30);
    CHECK(count_log_lines(r1.log_path(), "Master accepted a Partial Resynchronization", false) >= 1);
    CHECK(json_int(proxy.status(), "/counters/sync_partial_ok") >= 1);

    // Refused: a certificate the CA did not sign, no certificate, not TLS at all.
    CHECK(s_client(sandbox, tls_port, certs, certs.client_crt, certs.client_key, "good").find("+PONG") != std::string::npos);
    CHECK(s_client(sandbox, tls_port, certs, certs.rogue_crt, certs.rogue_key, "rogue").empty());
    CHECK(s_client(sandbox, tls_port, certs, "", "", "none").empty());
    {
        ScriptedReplica plain(tls_port);
        plain.send("PING\r\n");
        CHECK(plain.read_for(1.0).find("PONG") == std::string::npos);
    }
    wait_until("the refusals counted", 10, [&] { return json_int(proxy.status(), "/tls/handshake_failures") >= 3; });
    CHECK(count_log_lines(proxy.log_path(), "certificate verify failed", true) >= 1);
    CHECK(count_log_lines(proxy.log_path(), "did not return a certificate", true) >= 1);
    // The replicas went on meanwhile.
    write_burst(m, {0, 1, 5}, 10);
    wait_keyspace_equal(master, r2, 30);
    check_clean_shutdown(proxy);
}

TEST_CASE("tls: --status-tls yes: /status over HTTPS with the proxy's certificate; plain HTTP and a client certificate the CA did not sign get nothing") {
    Sandbox sandbox;
    Certs certs(sandbox.subdir("certs"));
    RedisServer master(sandbox, "master", sync_only_master_options());
    master.start();
    const std::string curl = find_executable("curl");
    const std::string dir = sandbox.subdir("curl");
    int calls = 0;
    // curl with the CA (and a certificate), exit code and body.
    auto https = [&](int port, const std::string& path, const std::string& cert, const std::string& key) {
        const std::string out = dir + "/out-" + std::to_string(++calls);
        std::vector<std::string> argv = {curl, "-s", "--max-time", "5", "--cacert", certs.ca};
        if (!cert.empty()) argv.insert(argv.end(), {"--cert", cert, "--key", key});
        argv.push_back("https://127.0.0.1:" + std::to_string(port) + path);
        const int rc = run_command(argv, out, 20);
        return std::make_pair(rc, read_file(out));
    };
    ProxyOptions po;
    po.extra_args = {"--status-tls", "yes", "--tls-cert-file", certs.server_crt, "--tls-key-file", certs.server_key,
                     "--tls-ca-cert-file", certs.ca, "--tls-auth-clients", "yes"};
    po.status_probe = [&](int port) {
        return https(port, "/status", certs.client_crt, certs.client_key).second.find("\"proxy\"") != std::string::npos;
    };
    ProxyProcess proxy(sandbox, "proxy", master.port(), po);
    proxy.start();
    const auto ok = https(proxy.status_port(), "/healthz", certs.client_crt, certs.client_key);
    wait_until("/healthz over HTTPS", 20, [&](std::string& state) {
        const auto r = https(proxy.status_port(), "/healthz", certs.client_crt, certs.client_key);
        state = "curl " + std::to_string(r.first) + ": " + r.second;
        return r.second == "ok\n";
    });
    const auto page = https(proxy.status_port(), "/", certs.client_crt, certs.client_key);
    CHECK(page.first == 0);
    CHECK(page.second.find("<title>psync-proxy</title>") != std::string::npos);
    // Refused: no certificate, one the CA did not sign, plain HTTP.
    CHECK(https(proxy.status_port(), "/status", "", "").second.empty());
    CHECK(https(proxy.status_port(), "/status", certs.rogue_crt, certs.rogue_key).second.empty());
    CHECK_THROWS(http_get(proxy.status_port(), "/status", 2));
    CHECK(count_log_lines(proxy.log_path(), "TLS handshake on the status port failed", true) >= 3);
    (void)ok;
    check_clean_shutdown(proxy);
}
