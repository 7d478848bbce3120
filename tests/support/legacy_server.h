// LegacyServer: a small emulation of a Redis 2.6.17 master on a loopback port, for the tests
// of what a SYNC-only master does with several replicas at once (the snapshot refresh opens a
// second SYNC link next to the proxy's live one).
//
// Unlike ScriptedMaster (one connection, driven byte by byte by the test), this is a server:
// one event-loop thread, like Redis, serving any number of clients, each a normal client until
// it sends SYNC. What it sends is what the 2.6.17 source sends (file:line of tag 2.6.17 in
// legacy_server.cpp); see also shared/PROTOCOL.md sections 1 and 5:
//
//  - commands: PING, QUIT, AUTH, SELECT, INFO, GET, SET k v, DEL, EXISTS, INCR, DECR, INCRBY,
//    DECRBY, APPEND, MSET, DBSIZE, FLUSHDB, PUBLISH (:0, no subscribers), BGSAVE, SYNC,
//    REPLCONF (listening-port only); anything else, PSYNC included,
//    `-ERR unknown command '<name as sent>'`. Inline (ended by "\r\n", as 2.6 requires) or
//    multibulk, pipelined.
//  - a write is propagated when it changed the dataset (call(): dirty), PUBLISH always
//    (flag "f"); in the db of the client that ran it.
//  - SYNC: syncCommand() (replication.c:117-183): no BGSAVE running: fork now ("Starting
//    BGSAVE for SYNC"); one running and a replica waiting for its end: a COPY of that replica's
//    output buffer ("Waiting for end of BGSAVE for SYNC"); one running and no such replica (a
//    client's BGSAVE): wait for the next one ("Waiting for next BGSAVE for SYNC"). Then
//    slaveseldb = 0, also after a copy (:180; copyClientOutputBuffer, networking.c:512-518,
//    does not copy it).
//  - the "BGSAVE child": the RDB is the keyspace at the fork, as 2.6 writes it (REDIS0006,
//    CRC64; strings only; keys in sorted order rather than hash order; no LZF, which 2.6 does
//    not apply to strings of 20 bytes or less); it "runs" for save_seconds, then
//    updateSlavesWaitingBgsave() (:284-334) hands it out.
//  - the feed: replicationFeedSlaves() (:42-74): inline lower-case `select N\r\n` when the
//    command's db differs from the replica's slaveseldb, the command as multibulk; replicas
//    waiting for the BGSAVE to start get nothing. replicationCron() (:805-834), every
//    ping_period_seconds: `*1\r\n$4\r\nPING\r\n` into the output of online replicas, a bare
//    `\n` written straight to the socket of those waiting for a BGSAVE, nothing during the
//    bulk transfer.
//  - the transfer (sendBulkToSlave, :225-276): `$<len>\r\n`, the RDB in 16 KB writes, no CRLF,
//    then the output buffer held since the fork.
//
// Test-only additions, none visible on the wire: write() runs commands in the loop as a
// client would; attach_replica() adds a replica with no socket (its bytes are kept), as if a
// replica's SYNC was handled at that instant; hooks run in the loop around each SYNC; and every
// SYNC is recorded with what its stream carried (see LegacyReplica).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/keyspace.h"
#include "tests/support/redis_client.h"

namespace psync::test {

struct LegacyServerOptions {
    double save_seconds = 0.2;          // how long a BGSAVE "child" runs
    double ping_period_seconds = 10;    // repl-ping-slave-period (2.6 default 10)
    bool refuse_publish = false;        // as with `rename-command PUBLISH ""`
    std::string requirepass;            // "" = none
    double lifetime_seconds = 300;      // the loop stops by itself after this (bounded in time)
};

// What one SYNC got, recorded by the server (in the order the SYNCs were handled).
struct LegacyReplica {
    int sync_number = 0;          // 1 for the first SYNC handled, ...
    bool attached = false;        // made by attach_replica() (no socket)
    std::string how;              // "forked", "copied", "waited" (see syncCommand above)
    int copied_from = 0;          // "copied": the sync_number whose output buffer was copied
    int copied_seldb = -1;        // "copied": that replica's slaveseldb at the copy (not copied)
    std::string state;            // wait_bgsave_start, wait_bgsave_end, send_bulk, online, closed
    size_t rdb_bytes = 0;         // of the RDB it got (0 until its transfer starts)
    uint64_t commands = 0;        // commands in its stream (selects, pings not counted)
    uint64_t selects = 0;         // `select N` lines in its stream
    uint64_t pings = 0;           // PINGs queued to it online
    uint64_t newlines = 0;        // bare "\n" written to it while it waited
    // Commands whose db is not the one the `select` lines of its stream imply (assuming db 0
    // at its start, as a replica does): only a copied buffer can produce them.
    uint64_t misrouted = 0;
    // The commands of its stream up to and including its first PUBLISH, and how many of
    // those were misrouted (unset until a PUBLISH reached it).
    std::optional<uint64_t> commands_through_first_publish;
    std::optional<uint64_t> misrouted_through_first_publish;
};

class LegacyServer {
public:
    explicit LegacyServer(LegacyServerOptions options = {});
    LegacyServer(const LegacyServer&) = delete;
    LegacyServer& operator=(const LegacyServer&) = delete;
    ~LegacyServer();  // stops the loop, closes every connection

    int port() const { return port_; }

    // Runs one command as a client selected in `db` would (authenticated), in the loop:
    // replied, applied, propagated exactly as a client's command. Returns the raw reply
    // bytes. Thread-safe; from a hook it runs at once. Throws if the loop has stopped.
    std::string write(int db, const Command& cmd);
    // Several, in one pass of the loop (nothing runs between them).
    std::vector<std::string> write_all(const std::vector<std::pair<int, Command>>& cmds);

    // A client's BGSAVE (not for a replica) that runs for `seconds`: the reply
    // (+Background saving started, or 2.6's error when one is running).
    std::string bgsave(double seconds);
    bool bgsave_in_progress();
    // The duration of the BGSAVEs started from now on (for replicas too).
    void set_save_seconds(double seconds);

    // A replica whose SYNC is handled now, without a socket; its bytes are kept
    // (attached_bytes). Returns its sync_number. From a hook it runs at once.
    int attach_replica();
    std::string attached_bytes(int sync_number);

    // The keyspace, in tests/support/keyspace.h's form (every key is a string, no TTL).
    Keyspace keyspace();

    std::vector<LegacyReplica> replicas();
    LegacyReplica replica(int sync_number);  // throws if there is no such SYNC
    int sync_count();
    // 2.6's log lines ("Slave ask for synchronization", "Starting BGSAVE for SYNC",
    // "Waiting for end of BGSAVE for SYNC", "Waiting for next BGSAVE for SYNC",
    // "Synchronization with slave succeeded", ...) and how many contain `needle`.
    std::vector<std::string> log();
    int log_count(const std::string& needle);

    // Run in the loop right before / after the SYNC numbered n is handled (n counts every SYNC
    // that reaches syncCommand's decision). A hook may call write() and attach_replica().
    using SyncHook = std::function<void(int sync_number)>;
    void set_before_sync(SyncHook hook);
    void set_after_sync(SyncHook hook);

    // An exception the loop died of ("" if none).
    std::string error();

private:
    struct Client;
    struct Save;
    struct Task;

    void run();
    void loop_once();
    void post(std::function<void()> fn);  // runs fn in the loop and waits (bounded)
    bool in_loop() const { return std::this_thread::get_id() == thread_id_; }

    void accept_clients();
    void read_client(Client& c);
    void write_client(Client& c);
    void process_input(Client& c);
    void process_command(Client& c, const Command& argv);
    void reply(Client& c, const std::string& bytes);
    void free_client(int id);

    void sync_command(Client& c);
    void feed_slaves(int db, const Command& argv);
    void start_bgsave(double seconds, bool for_replicas);
    void bgsave_done();
    void replication_cron();
    void log_line(const std::string& line);
    void update_record(const Client& c);
    std::string info(const std::string& section) const;
    Client& new_client(int fd);

    LegacyServerOptions options_;
    int port_ = 0;
    int listen_fd_ = -1;
    int wake_fds_[2] = {-1, -1};

    std::mutex mutex_;  // guards tasks_, error_, stopped_
    std::vector<std::shared_ptr<Task>> tasks_;
    std::string error_;
    bool stopped_ = false;
    bool stop_requested_ = false;

    // Loop-thread state.
    std::array<std::map<std::string, std::string>, 16> dbs_;
    std::map<int, std::unique_ptr<Client>> clients_;
    std::vector<Client*> slaves_;  // server.slaves, in the order they were added
    std::unique_ptr<Client> api_client_;
    std::unique_ptr<Save> save_;
    std::shared_ptr<const std::string> dump_rdb_;  // the last finished BGSAVE ("dump.rdb")
    std::vector<LegacyReplica> records_;
    std::vector<std::string> log_;
    SyncHook before_sync_;
    SyncHook after_sync_;
    std::optional<std::chrono::steady_clock::time_point> next_ping_;
    int next_client_id_ = 1;
    std::string run_id_;
    int64_t started_unix_ = 0;
    long long dirty_ = 0;             // server.dirty
    int64_t last_save_unix_ = 0;      // server.lastsave
    int64_t last_save_seconds_ = -1;  // server.rdb_save_time_last

    std::thread::id thread_id_;
    std::thread thread_;
};

// The RDB 2.6.17 writes for these string keys (rdbSave, rdb.c:630-700): "REDIS0006", per
// non-empty db 0xFE and its number, each key as type 0 with rdbSaveRawString's encodings
// (canonical int32 decimals as 0xC0/0xC1/0xC2 integers), 0xFF, then the CRC64 (crc64.c,
// Jones) of all that, little endian. No LZF (2.6 uses it only on strings over 20 bytes).
std::string redis26_rdb(const std::array<std::map<std::string, std::string>, 16>& dbs);

// Redis's crc64 (crc-64-jones, init 0); crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
uint64_t redis_crc64(uint64_t crc, const std::string& bytes);

}  // namespace psync::test
