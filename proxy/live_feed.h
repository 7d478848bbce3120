// The live feed: the consumer of the proxy's main upstream link. It turns
// what the master sends into the lineage store's contents:
//
// - an RDB is fsynced and renamed off the loop, then starts a new lineage at
//   the store's committed end (the link waits meanwhile, and the proxy's own
//   PINGs are held so that the offset cannot move);
// - stream bytes are appended, and committed at every command boundary with
//   the master offset they end at (the one commit point, see
//   backlog/lineage_store.h); a dropped upstream PING commits the master
//   offset alone;
// - a lost link rolls the store back to its last commit; a resumed one
//   (+CONTINUE) goes on from it.
//
// A standby's feed (Source::kActive) follows another psync-proxy instead and
// mirrors it: the store's lineage is the active's, with its replid and its
// offsets (the active's +FULLRESYNC offset is the snapshot's; every byte of
// its stream, its own PINGs included, is appended as it came, so the log is
// the active's byte for byte and replicas may PSYNC either proxy). The
// invariant, checked at every commit: the store's committed end is the
// active's offset.
#pragma once

#include <uv.h>

#include <memory>

#include "proxy/link.h"

namespace psync::proxy {

class Proxy;

class LiveFeed : public LinkConsumer {
 public:
  enum class Source { kMaster, kActive };
  LiveFeed(Proxy& proxy, Source source);
  // A master link that is streaming already becomes the live one (a
  // standby's own link at the takeover, proxy/standby.h).
  LiveFeed(Proxy& proxy, std::unique_ptr<Link> streaming);
  ~LiveFeed() override;
  LiveFeed(const LiveFeed&) = delete;
  LiveFeed& operator=(const LiveFeed&) = delete;

  void start() { link_->start(); }
  void stop();
  Source source() const { return source_; }
  bool mirrors() const { return source_ == Source::kActive; }
  const Link& link() const { return *link_; }
  Link& link() { return *link_; }
  // The master's replication ID and the master offset of the last committed
  // byte (PSYNC links): where a resumed link starts.
  const std::string& master_replid() const;
  uint64_t master_offset() const;

 private:
  struct Commit;
  static void on_commit_work(uv_work_t* req);
  static void on_commit_done(uv_work_t* req, int status);

  // LinkConsumer
  std::optional<backlog::UpstreamPosition> resume_point() override;
  void on_rdb(std::unique_ptr<backlog::SnapshotWriter> rdb,
              std::optional<backlog::UpstreamPosition> full_resync) override;
  bool on_continue(const std::string& replid, uint64_t offset) override;
  bool on_stream(std::string_view bytes, bool at_boundary, uint64_t master_offset) override;
  bool on_ping(uint64_t master_offset) override;
  uint64_t ack_offset() override;
  void on_lost(const std::string& why, bool was_streaming) override;
  void on_storage_error(const std::string& what) override;
  void on_bad_stream() override;

  // A standby's stream is not the active's: the link ends, logged.
  bool mirror_mismatch(const std::string& what);

  Proxy& proxy_;
  Source source_;
  std::unique_ptr<Link> link_;
  bool stopped_ = false;
  bool mirror_broken_ = false;  // the mirror cannot be resumed: a full resync from the active next
  Commit* committing_ = nullptr;  // the snapshot commit running off the loop
};

}  // namespace psync::proxy
