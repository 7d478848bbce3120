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
  lineage_start_ = snapshot_->offset();
  if (old) old->discard();
  problems.clear();
  try {
    log_.trim_before(snapshot_->offset() + 1);
  } catch (const std::exception& e) {
    problems = e.what();
  }
}

void LineageStore::install_snapshot(std::shared_ptr<Snapshot> snapshot) {
  if (!snapshot_ || !snapshot || snapshot->replid() != replid_ || snapshot->offset() > committed_end_ ||
      snapshot->offset() + 1 < log_.first_offset() || snapshot->offset() < snapshot_->offset()) {
    throw std::logic_error("LineageStore::install_snapshot: not a snapshot of this lineage inside the log");
  }
  std::shared_ptr<Snapshot> old = std::move(snapshot_);
  snapshot_ = std::move(snapshot);
  // Same replid, same file name: the new file was renamed over the old one,
  // which discard() recognises and leaves alone.
  old->discard();
}

uint64_t LineageStore::psync_floor() const {
  uint64_t floor = log_.first_offset();
  if (snapshot_) floor = std::max(floor, lineage_start_ + 1);
  return floor;
}

uint64_t LineageStore::trim(uint64_t backlog_bytes, uint64_t hold_from, std::string& problems) {
  problems.clear();
  if (!snapshot_) return 0;
  uint64_t x1 = snapshot_->offset() + 1;
  uint64_t keep_from = x1 > backlog_bytes ? x1 - backlog_bytes : 1;
  keep_from = std::min(keep_from, hold_from);
  const uint64_t before = log_.bytes_on_disk();
  try {
    log_.trim_before(keep_from);
  } catch (const std::exception& e) {
    problems = e.what();
  }
  return before - log_.bytes_on_disk();
}

bool LineageStore::can_continue(std::string_view replid, uint64_t offset) const {
  return snapshot_ && replid == replid_ && offset >= psync_floor() && offset <= committed_end_ + 1;
}

}  // namespace psync::backlog
