// A scripted pre-PSYNC master: a loopback listener that speaks the Redis 2.4/2.6 replication
// dialect byte for byte (see shared/PROTOCOL.md section 1), driven step by step by the test.
// It is meant for fault injection too: send arbitrary bytes, in chunks, close at any point.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/redis_client.h"

namespace psync::test {

// RESP multibulk encoding of one command, as 2.6 writes it: *N\r\n$len\r\narg\r\n...
std::string multibulk(const Command& args);

// How a legacy master answers a handshake command; nullopt means "no reply" (SYNC).
using LegacyReplier = std::function<std::optional<std::string>(const Command&)>;

// Redis 2.6's answers: PING +PONG, AUTH +OK, REPLCONF listening-port +OK, other REPLCONF
// options -ERR Unrecognized REPLCONF option, PSYNC -ERR unknown command 'PSYNC', SYNC nothing,
// INFO a bulk with redis_version:2.6.17.
std::optional<std::string> redis26_reply(const Command& cmd);

class ScriptedMaster {
public:
    ScriptedMaster();  // listens on 127.0.0.1, kernel-chosen port
    ScriptedMaster(const ScriptedMaster&) = delete;
    ScriptedMaster& operator=(const ScriptedMaster&) = delete;
    ~ScriptedMaster();

    int port() const { return port_; }

    // Accepts the next connection (closing the current one, if any); throws after timeout_s.
    void accept_client(double timeout_s = 15);
    bool has_client() const { return client_fd_ >= 0; }

    // Next command from the client, inline or multibulk (bare "\n" lines are skipped).
    // Throws std::runtime_error on timeout or if the client closes the connection.
    Command read_command(double timeout_s = 10);

    // Answers the handshake with `replier` until a SYNC arrives; returns every command
    // received, the SYNC last. The caller then sends the payload.
    std::vector<Command> serve_until_sync(double timeout_s = 15, const LegacyReplier& replier = redis26_reply);

    // Raw bytes to the client, all at once or in chunks of `chunk` bytes with a pause between.
    void send(std::string_view bytes);
    void send_chunked(std::string_view bytes, size_t chunk, int pause_ms);

    // The SYNC payload as 2.6 frames it: `keepalives` bare "\n", "$<len>\r\n", the RDB with
    // no trailing CRLF, then `stream_head` (stream bytes glued to the RDB in the same write).
    void send_payload(const std::string& rdb, int keepalives = 2, const std::string& stream_head = "");

    // Everything the client sent that has not been consumed by read_command, after waiting
    // up to wait_s for more. (The proxy must send nothing after SYNC.)
    std::string received_bytes(double wait_s);

    // Waits until the client closes its side; returns false on timeout.
    bool wait_client_closed(double timeout_s);

    // Closes the client connection (the proxy sees the upstream link drop).
    void close_client();

private:
    bool fill(double timeout_s);  // reads more bytes into in_; false on timeout; throws on EOF

    int listen_fd_ = -1;
    int client_fd_ = -1;
    int port_ = 0;
    std::string in_;
    bool client_eof_ = false;
};

// Builds a replication stream in the 2.6 dialect, and records the same writes so they can be
// applied to a real server for comparison:
//  - commands are multibulk;
//  - SELECT is inline lower case (`select 2\r\n`), only when the db changes; the stream is
//    assumed to start in db 0, so no SELECT precedes the first db-0 write.
class LegacyStream {
public:
    void select(int db) { db_ = db; }  // SELECT is written lazily, before the next command
    void command(const Command& args);  // a write command in the current db
    void ping_multibulk() { bytes_ += "*1\r\n$4\r\nPING\r\n"; }  // 2.6
    void ping_inline() { bytes_ += "PING\r\n"; }                 // 2.4
    void newline() { bytes_ += "\n"; }
    void raw(std::string_view bytes) { bytes_ += bytes; }

    // Bytes produced since the last call.
    std::string take_bytes() { return std::exchange(bytes_, std::string()); }
    // Writes (db, command) produced since the last call.
    std::vector<std::pair<int, Command>> take_writes() { return std::exchange(writes_, {}); }

private:
    int db_ = 0;
    int stream_db_ = 0;
    std::string bytes_;
    std::vector<std::pair<int, Command>> writes_;
};

// Applies recorded writes to a real server, in order, with SELECT where the db changes.
// MULTI/EXEC blocks are applied as transactions. Throws on error replies.
void apply_writes(RedisClient& client, const std::vector<std::pair<int, Command>>& writes);

}  // namespace psync::test
