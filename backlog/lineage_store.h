// The lineage store: everything the proxy serves its replicas from, and
// nothing about sockets. One lineage is (replid, snapshot at offset S, the log
// from S+1 to the committed end).
//
// The one commit point. Stream bytes are appended, then committed together
// with the position in the upstream master's stream that they end at:
//
//   append(bytes) ... append(bytes)  commit(upstream offset)
//   └─ written past the committed end, ─┘└─ readers may now read them, and a
//      invisible to readers                 resumed upstream link starts after
//                                           that upstream offset
//
// Invariants (what was missing when a failed append silently skipped commands
// on a PSYNC resume: the master offset and the log's end were two counters
// that could drift apart):
//   1. committed_end() <= log().last_offset(); readers never go past it.
//   2. upstream().offset is the master offset of the last committed byte, and
//      changes only in commit() (or when a lineage or upstream stream starts).
//      So the resume point of an upstream link and what replicas have been
//      shown can never disagree.
//   3. rollback() brings the log back to the committed end and cannot fail:
//      after any failed append, or a link lost mid-command, the next bytes are
//      appended right after the last committed one.
//   4. The data directory describes the store (backlog/manifest.h): every
//      commit is written to commit.rec (one pwrite) before the committed end
//      moves and anyone is told, and manifest.json is rewritten (atomically)
//      whenever the lineage, the snapshot, the segment list or the upstream
//      stream changes, listing only committed bytes (M1). A new segment is in
//      a written manifest before the commit that first reaches into it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backlog/manifest.h"
#include "backlog/replication_log.h"
#include "backlog/snapshot_store.h"

namespace psync::backlog {

// Where a committed end stands in the upstream master's own stream.
struct UpstreamPosition {
  std::string replid;   // the master's replication ID; "" when the link cannot be resumed
  uint64_t offset = 0;  // master offset of the last committed byte
};

class LineageStore {
 public:
  LineageStore(std::string dir, uint64_t segment_bytes);
  LineageStore(const LineageStore&) = delete;
  LineageStore& operator=(const LineageStore&) = delete;

  // Deletes what an earlier run left and starts with an empty log whose first
  // byte will be next_offset, and no lineage; writes the first manifest and
  // opens commit.rec. Throws LogError.
  void reset(uint64_t next_offset);

  // Reopens the lineage an earlier run left in the directory (restart),
  // following the reader's protocol of backlog/manifest.h:
  //   kNone     no manifest: nothing to reopen (the caller calls reset()).
  //   kReopened the commit record is from this boot and the files agree: the
  //             log is cut back to its commit point (a torn tail goes), the
  //             same replid, snapshot and upstream position go on.
  //   kStale    the record is of an earlier boot and newer than the manifest:
  //             the machine went down without the proxy's clean shutdown, so
  //             the log may have lost pages it describes: not reopened (the
  //             caller starts a new lineage, saying why).
  //   kRefused  a manifest that cannot be read (garbage, a newer format),
  //             or files that disagree with it and with the record: `what`
  //             names the file and says what is wrong; nothing was changed.
  // `what` also says what was reopened, and which stray files were removed.
  enum class Reopen { kNone, kReopened, kStale, kRefused };
  Reopen open(std::string& what);
  // At a clean shutdown: every segment and the commit record are synced to
  // the disk, then a manifest with the exact commit point is written, so the
  // lineage reopens after a reboot too. Throws LogError.
  void close_cleanly();

  // The manifest describing the committed store now.
  Manifest manifest() const;
  // A manifest that could not be written outside a commit (a lineage, a
  // snapshot, a trim): the error, until a later write succeeds. flush()
  // retries it.
  const std::string& persist_error() const { return persist_error_; }
  void flush();

  // ----- Writing (the live feed) -----
  // Appends past the committed end. Throws LogError; the bytes are then not
  // in the log, and what was appended before them since the last commit is
  // still there: the caller ends the stream and calls rollback().
  void append(std::string_view bytes);
  // Makes everything appended so far readable; upstream_offset is the master
  // offset that the last byte of it corresponds to. Notifies the listener when
  // the committed end moved.
  void commit(uint64_t upstream_offset);
  // The same, for bytes of the proxy's own (its PINGs): the upstream position
  // stays where it was. Only when nothing is uncommitted.
  void commit_own();
  // Drops what was appended since the last commit; returns the byte count.
  // problems receives what tidying the files could not do ("" if nothing).
  uint64_t rollback(std::string& problems);
  bool has_uncommitted() const { return log_.last_offset() != committed_end_; }
  uint64_t committed_end() const { return committed_end_; }

  // ----- The upstream stream this lineage follows -----
  const UpstreamPosition& upstream() const { return upstream_; }
  // A new upstream stream whose byte `offset` corresponds to the committed
  // end (after +FULLRESYNC, +CONTINUE <new replid>); replid "" for a stream
  // that cannot be resumed (SYNC).
  void set_upstream(std::string replid, uint64_t offset);
  // The upstream stream cannot be resumed at the committed end any more.
  void forget_upstream();

  // ----- The lineage -----
  // A complete, durable snapshot taken at the committed end (its offset must
  // be committed_end(), and nothing may be uncommitted): its lineage starts.
  // The previous snapshot file is discarded and log segments wholly before the
  // new snapshot are deleted (problems says what could not be).
  void begin_lineage(std::shared_ptr<Snapshot> snapshot, std::string& problems);
  // A newer snapshot of the same lineage (a refresh), taken at offset X of
  // the committed log: X <= committed_end() and the log still holds X+1, so
  // a full resync is this RDB, its prefix, then the log from X+1. The
  // previous snapshot is discarded (its readers go on with their fd).
  void install_snapshot(std::shared_ptr<Snapshot> snapshot);
  const std::string& replid() const { return replid_; }  // "" before the first snapshot
  // The lineage goes on under a new replication ID, as a promoted Redis
  // replica's does: the old one becomes replid2, valid for PSYNCs up to
  // second_offset() = the committed end + 1 (a replica that holds bytes past
  // it got them from someone else, and cannot be sure they match). Used when
  // a standby takes over its active's lineage (proxy/standby.h): past that
  // point the stream is no longer the old replid's, and two sources must
  // never serve one replid with different bytes. Nothing may be uncommitted.
  void switch_replid(std::string new_replid);
  // "" (and -1) when there is none; a new lineage clears it.
  const std::string& replid2() const { return replid2_; }
  int64_t second_offset() const { return second_offset_; }
  // The snapshot full resyncs are served from (the newest).
  const std::shared_ptr<Snapshot>& snapshot() const { return snapshot_; }
  // Offset of the snapshot the lineage started from.
  uint64_t lineage_start() const { return lineage_start_; }
  // First offset a PSYNC of this lineage may ask for: the lineage's first
  // byte, or the first byte still retained.
  uint64_t psync_floor() const;
  // Stream bytes committed since the current snapshot.
  uint64_t bytes_since_snapshot() const { return snapshot_ ? committed_end_ - snapshot_->offset() : 0; }

  // ----- Retention -----
  // Deletes the log segments that nobody can need any more: those wholly
  // before X+1-backlog_bytes (X: the current snapshot's offset; a full resync
  // needs the log from X+1 on, a partial one is served within backlog_bytes
  // before it) and before hold_from (the first offset a full resync still in
  // progress will read: its snapshot may be an older one). Returns the bytes
  // deleted; problems says what could not be.
  uint64_t trim(uint64_t backlog_bytes, uint64_t hold_from, std::string& problems);
  // PSYNC <replid> <offset> can be answered +CONTINUE: the current replid, or
  // replid2 with an offset up to second_offset().
  bool can_continue(std::string_view replid, uint64_t offset) const;

  // ----- Reading -----
  const ReplicationLog& log() const { return log_; }
  // Called after every commit that moved the committed end.
  void set_listener(std::function<void()> on_commit) { on_commit_ = std::move(on_commit); }

 private:
  // Writes the manifest of the committed store now; throws.
  void write_manifest_now();
  // The segment list is not the one the last manifest lists.
  bool segments_changed() const;
  // The same outside a commit: failures are kept in persist_error_.
  void persist();
  // Deletes the whole segments before keep_from (not the last), after a
  // manifest that no longer lists them. Throws LogError.
  void trim_to(uint64_t keep_from);
  // The commit point goes to commit.rec, and to the manifest first when the
  // segment list changed (a new segment). Throws LogError.
  void record_commit(uint64_t end, uint64_t upstream_offset);

  ReplicationLog log_;
  std::string dir_;
  std::optional<CommitRecord> record_;
  uint64_t persisted_generation_ = UINT64_MAX;  // the log's segment list generation the last manifest lists
  bool persist_dirty_ = false;
  uint64_t trim_floor_ = 0;  // while trimming: the manifest lists segments from here
  std::string persist_error_;
  uint64_t committed_end_ = 0;
  UpstreamPosition upstream_;
  std::string replid_;
  std::string replid2_;
  int64_t second_offset_ = -1;
  std::shared_ptr<Snapshot> snapshot_;
  uint64_t lineage_start_ = 0;
  std::function<void()> on_commit_;
};

}  // namespace psync::backlog
