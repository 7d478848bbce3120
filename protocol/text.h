// Peer bytes as they may appear in proxy state, an error message, a RESP error
// line, a log line or /status JSON.
//
// The invariant: every string that comes from a peer (a master's error reply,
// its INFO redis_version, a replica's command name or PSYNC arguments, ...) is
// passed through peer_text() or quoted() where it enters the proxy, before it
// is kept in state or put in a message. What they return is printable ASCII
// (0x20-0x7e) only, so it is valid UTF-8, one line, and safe for json::dump(),
// a RESP status or error line, and a terminal; cutting it never splits a
// character or an escape. A string that must have a form (a replication ID)
// is checked with is_replid() and refused otherwise, never kept half-valid.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace psync::protocol {

// Long enough for a master's error reply, short enough for one log line.
constexpr size_t kMaxPeerText = 256;

// Printable ASCII (0x20-0x7e) kept as is, every other byte as \xHH (lower-case
// hex). At most max_len bytes of output: a longer result is cut between two
// escapes and ends in "..." (within max_len). A backslash is kept as is, so the
// text is for reading, not decoding; and applying it to its own output changes
// nothing (as long as it is not cut again).
std::string peer_text(std::string_view bytes, size_t max_len = kMaxPeerText);

// 'like this': peer_text(s, 64) in single quotes (so a cut one ends in "...'").
std::string quoted(std::string_view s);

// A replication ID as Redis makes them: exactly 40 hex digits (either case).
bool is_replid(std::string_view s);

}  // namespace psync::protocol
