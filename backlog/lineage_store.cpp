#include "backlog/lineage_store.h"

#include <stdexcept>

namespace psync::backlog {

LineageStore::LineageStore(std::string dir, uint64_t segment_bytes) : log_(std::move(dir), segment_bytes) {}

void LineageStore::reset(uint64_t next_offset) {
  log_.reset(next_offset);
  committed_end_ = log_.last_offset();
  upstream_ = {};
  replid_.clear();
  snapshot_.reset();
}

void LineageStore::append(std::string_view bytes) { log_.append(bytes); }

void LineageStore::commit(uint64_t upstream_offset) {
  upstream_.offset = upstream_offset;
  if (committed_end_ == log_.last_offset()) return;
  committed_end_ = log_.last_offset();
  if (on_commit_) on_commit_();
}

void LineageStore::commit_own() {
  if (committed_end_ == log_.last_offset()) return;
  committed_end_ = log_.last_offset();
  if (on_commit_) on_commit_();
}

uint64_t LineageStore::rollback(std::string& problems) {
  uint64_t dropped = log_.last_offset() - committed_end_;
  problems = dropped ? log_.truncate_to(committed_end_ + 1) : std::string();
  return dropped;
}

void LineageStore::set_upstream(std::string replid, uint64_t offset) {
  upstream_.replid = std::move(replid);
  upstream_.offset = offset;
}

void LineageStore::begin_lineage(std::shared_ptr<Snapshot> snapshot, std::string& problems) {
  if (!snapshot || snapshot->offset() != committed_end_ || has_uncommitted()) {
    throw std::logic_error("LineageStore::begin_lineage: the snapshot is not at the committed end");
  }
  std::shared_ptr<Snapshot> old = std::move(snapshot_);
  snapshot_ = std::move(snapshot);
  replid_ = snapshot_->replid();
  if (old) old->discard();
  problems.clear();
  try {
    log_.trim_before(snapshot_->offset() + 1);
  } catch (const std::exception& e) {
    problems = e.what();
  }
}

uint64_t LineageStore::psync_floor() const {
  uint64_t floor = log_.first_offset();
  if (snapshot_) floor = std::max(floor, snapshot_->offset() + 1);
  return floor;
}

bool LineageStore::can_continue(std::string_view replid, uint64_t offset) const {
  return snapshot_ && replid == replid_ && offset >= psync_floor() && offset <= committed_end_ + 1;
}

}  // namespace psync::backlog
