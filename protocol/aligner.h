// The Aligner: places a second SYNC link of the same master in the live
// stream. Pure: two sequences of (db, command bytes) and a marker in, an
// offset or a reason out.
//
// To refresh its snapshot without a new lineage the proxy opens a second SYNC
// link. Its RDB is the master's state at the fork; its stream begins with the
// first command after the fork. A plain client meanwhile sends
// `PUBLISH <channel> <nonce-k>` (k = 1, 2, ...; PUBLISH is force-replicated).
// If marker k is the first marker on the new link, the fork lies after marker
// k-1 and before marker k in the live stream, and the new link's commands up
// to marker k are the LAST commands before marker k in the live stream, each
// in the same db. Each link carries its own SELECTs and its own PINGs, so the
// two are compared as sequences of (db, bytes) with PINGs and SELECTs
// dropped, never as raw bytes.
//
// Only a verified alignment is accepted: the new link's db at its start is
// assumed 0 (Redis 2.6 sets the replica's selected db to 0 at SYNC), which is
// wrong when the link got a copy of another replica's output buffer (the
// selected db is not copied); then some (db, bytes) pair differs and align()
// fails. It never guesses.
//
// Offsets are replication offsets: a command's `end` is the offset of its
// last byte, and a replica served "the snapshot at X" continues with the byte
// at X+1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace psync::protocol {

// One command of a normalized stream (PINGs and SELECTs are not commands
// here). bytes is its whole RESP multibulk encoding, a view into the bytes
// given to split_commands; db is the db it runs in; end is the stream offset
// of its last byte.
struct StreamCommand {
  std::string_view bytes;
  int64_t db = 0;
  uint64_t end = 0;
};

// Splits normalized stream bytes (RESP multibulk only, as the proxy logs
// them) into commands, appending to out. first_offset is the offset of
// bytes[0]; db is the db in effect before bytes[0] and is updated by each
// SELECT. PING (any case, any arguments) is dropped; SELECT (any case) is
// dropped after it sets db. Returns false with a reason in error if the bytes
// are not whole multibulk commands (a count >= 1, then that many bulks, the
// lengths canonical decimals as the normalizer emits them) or a SELECT does
// not have exactly one argument that is a db number (0..2^31-1, canonical
// decimal). On failure out holds the commands before the bad one and db the
// db in effect there.
bool split_commands(std::string_view bytes, uint64_t first_offset, int64_t& db, std::vector<StreamCommand>& out,
                    std::string& error);

// If cmd_bytes is exactly one multibulk command `PUBLISH <channel> <nonce>`
// (command name in any case, channel byte-exact), its nonce; else nullopt.
std::optional<std::string_view> marker_nonce(std::string_view cmd_bytes, std::string_view channel);
// True if cmd_bytes is exactly the marker `PUBLISH <channel> <nonce>`.
bool is_marker(std::string_view cmd_bytes, std::string_view channel, std::string_view nonce);

enum class AlignError {
  kNone,
  kFreshNoMarker,        // the new link's window is empty or does not end with the marker
  kLiveNoMarker,         // the live window is empty or does not end with the same marker
  kEarlierMarkerInFresh, // another of our markers before the marker on the new link: wrong k
  kMarkerInLive,         // another of our markers inside the live window: it does not start after marker k-1
  kFreshLonger,          // more commands on the new link than in the live window: the fork was before marker k-1
  kCommandDiffers,       // the i-th command of the new link is not the live command it must be
  kOtherDb,              // the same bytes, another db: the new link's assumed db is wrong
  kInsideMulti,          // the fork would fall between a MULTI and its EXEC
};

struct Alignment {
  bool ok = false;
  // On success: X, the live offset of the snapshot, and the db in effect in
  // the live stream at X (see align()).
  uint64_t offset = 0;
  int64_t db = 0;
  AlignError error = AlignError::kNone;
  std::string reason;  // on failure: what and where, with quoted bytes
  // New-link commands found equal to their live counterparts: fresh.size()
  // on success; on kCommandDiffers / kOtherDb the index of the first one
  // that is not.
  size_t matched = 0;
};

// live: the live stream's commands after marker k-1 through marker k (its
// last element). live_start is the end offset of marker k-1 and live_start_db
// the db in effect at live_start (the db marker k-1 ran in). fresh: the new
// link's commands from its start through its first marker (its last element),
// split from db 0. nonce is the nonce of marker k.
//
// Succeeds when fresh equals, (db, bytes) pair by pair, the last fresh.size()
// commands of live, no other marker on `channel` precedes the last element of
// either, and the fork does not fall inside a MULTI/EXEC block (a fork happens
// between two commands of the event loop, a transaction is propagated in one:
// a match inside one is not a real fork). Then, with j the live command just
// before the first matched one:
//
//   offset = live[j].end and db = live[j].db,
//   or live_start and live_start_db when every live command is matched.
//
// Why this db: the snapshot is served as `SELECT <db>`, then the log from
// offset+1. The live stream changes db only with a SELECT placed right before
// the first command in the new db, so a SELECT between live[j] and live[j+1]
// lies at offsets > X: it is part of the log served from X+1 and switches the
// replica exactly where the live stream switched. Up to X, the db in effect is
// the one live[j] ran in. Hence every command after X runs on the replica in
// the db it ran in on the live stream. (live[j+1].db would give the same
// result, the SELECT being repeated, but it is not the db at X.)
//
// What no check can see: a new link that lost its first commands would look
// like a later fork. The links are TCP streams and split whole; nothing is
// dropped but PINGs and SELECTs.
Alignment align(const std::vector<StreamCommand>& live, uint64_t live_start, int64_t live_start_db,
                const std::vector<StreamCommand>& fresh, std::string_view channel, std::string_view nonce);

}  // namespace psync::protocol
