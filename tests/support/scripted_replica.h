// A scripted replica: a plain loopback socket that sends the exact handshake bytes of a given
// Redis generation (2.6 SYNC, 2.8-3.2 PSYNC1, 4.0+ PSYNC2) and records every byte the proxy
// sends back, so tests can check replies, the RDB payload, the stream and its offsets exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/redis_client.h"

namespace psync::test {

// One command of a replication stream, with its offsets in the master's offset space.
struct StreamCommand {
    uint64_t offset = 0;  // offset of its first byte
    size_t length = 0;    // bytes, so the next command starts at offset + length
    Command args;
};

// Parses whole RESP multibulk commands from `bytes`, the first byte having offset
// `first_offset`. Anything that is not multibulk (an inline command, a bare "\n", a reply)
// throws std::runtime_error naming the offset: a master must send nothing else to an online
// replica. `consumed` (if given) gets the bytes of the whole commands; a trailing partial
// command is left out.
std::vector<StreamCommand> parse_stream(std::string_view bytes, uint64_t first_offset, size_t* consumed = nullptr);

// The writes a stream carries, tagged with their db: SELECT changes the db (the stream starts
// in `start_db`), PING and REPLCONF are left out.
std::vector<std::pair<int, Command>> stream_writes(const std::vector<StreamCommand>& commands, int start_db = 0);

// Readable rendering of writes, for messages.
std::string describe_writes(const std::vector<std::pair<int, Command>>& writes, size_t max_items = 12);

class ScriptedReplica {
public:
    // Connects to 127.0.0.1:port. rcvbuf > 0 sets SO_RCVBUF before connecting: with a reader
    // that does not read, the proxy's writes then block early (a slow replica).
    explicit ScriptedReplica(int port, int rcvbuf = 0);
    ScriptedReplica(const ScriptedReplica&) = delete;
    ScriptedReplica& operator=(const ScriptedReplica&) = delete;
    ~ScriptedReplica();

    // The local port of the connection (how the proxy lists it as address 127.0.0.1:<port>).
    int local_port() const { return local_port_; }

    // Raw bytes to the proxy.
    void send(std::string_view bytes);

    // Next reply line without its "\r\n". Bare "\n" keepalives before it are skipped and
    // counted in keepalives(). Throws on timeout or if the proxy closes the connection.
    std::string read_line(double timeout_s = 5);

    // A SYNC payload: "\n" keepalives (counted), "$<len>\r\n", then exactly len bytes.
    std::string read_payload(double timeout_s = 15);

    // Exactly n bytes.
    std::string read_exact(size_t n, double timeout_s = 10);

    // Whatever arrives within wait_s (at least what is buffered already).
    std::string read_for(double wait_s);

    // Everything received and not consumed yet, and the whole buffer consumed.
    std::string take_buffered();

    // Waits until the proxy closes the connection (everything received before is buffered);
    // false on timeout.
    bool wait_closed(double timeout_s);
    bool closed() const { return eof_; }

    int keepalives() const { return keepalives_; }

    // The stream: after a +FULLRESYNC (offset S, then the RDB) or +CONTINUE from offset N, the
    // test calls begin_stream(S + 1) or begin_stream(N); from then on every byte received is
    // stream, appended to stream() with its offsets.
    void begin_stream(uint64_t first_offset);
    // Reads until the stream reaches `offset` (the offset of its last byte); FAILs the test
    // with what was received after timeout_s.
    void read_stream_until(uint64_t offset, double timeout_s = 15);
    // Reads until `done(stream commands)` holds.
    void read_stream_while(const std::string& what, double timeout_s,
                           const std::function<bool(const std::vector<StreamCommand>&)>& done);
    const std::string& stream() const { return stream_; }
    uint64_t stream_first_offset() const { return stream_first_; }
    // Offset of the last stream byte received (first_offset - 1 when none).
    uint64_t stream_end() const { return stream_first_ + stream_.size() - 1; }
    // The stream parsed (strictly: multibulk only).
    std::vector<StreamCommand> stream_commands() const;

    void close();

private:
    bool fill(double timeout_s);  // false on timeout; sets eof_ on close

    int fd_ = -1;
    int local_port_ = 0;
    std::string in_;
    bool eof_ = false;
    int keepalives_ = 0;
    bool streaming_ = false;
    uint64_t stream_first_ = 0;
    std::string stream_;
};

}  // namespace psync::test
