#include "backlog/lineage_store.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include <stdexcept>

namespace psync::backlog {

LineageStore::LineageStore(std::string dir, uint64_t segment_bytes) : log_(dir, segment_bytes), dir_(dir) {}

void LineageStore::reset(uint64_t next_offset) {
  log_.reset(next_offset);
  committed_end_ = log_.last_offset();
  upstream_ = {};
  replid_.clear();
  replid2_.clear();
  second_offset_ = -1;
  snapshot_.reset();
  lineage_start_ = 0;
  record_.reset();
  record_.emplace(CommitRecord::open(dir_));
  record_->write(committed_end_, 0);
  write_manifest_now();
}

LineageStore::Reopen LineageStore::open(std::string& what) {
  std::string error;
  std::optional<Manifest> m = read_manifest(dir_, error);
  if (!m) {
    what = error;
    return error.empty() ? Reopen::kNone : Reopen::kRefused;
  }
  std::string rec_error;
  std::optional<CommitRecord::Rec> rec = CommitRecord::read(dir_, rec_error);
  std::string warnings;
  std::string files_error = "no commit record";
  if (rec && !rec->this_boot && rec->committed_end != log_end(*m)) {
    // A clean shutdown syncs everything and writes a manifest at the exact
    // commit point; this one did not happen before the machine went down.
    what = dir_ + ": the commit record (offset " + std::to_string(rec->committed_end) +
           ") is of an earlier boot and newer than the manifest (offset " + std::to_string(log_end(*m)) +
           "): the machine went down without a clean shutdown of the proxy, and the log may have lost what it "
           "describes";
    return Reopen::kStale;
  }
  if (rec) files_error = check_files(dir_, *m, rec->committed_end, warnings);
  if (!rec || !files_error.empty()) {
    // The manifest's own commit point would reopen an older log than what
    // replicas may hold; that needs a new replid (replid2), not done yet.
    what = dir_ + ": cannot reopen the lineage: " + (rec ? files_error : rec_error);
    return Reopen::kRefused;
  }
  // What the manifest does not name goes: stray segments (started for bytes
  // never committed, or left by a trim), temp files of downloads cut short,
  // snapshots of other lineages.
  std::string removed;
  {
    std::vector<std::string> keep;
    if (m->snapshot) keep.push_back(m->snapshot->file);
    for (const auto& ms : m->segments) keep.push_back(ms.file);
    DIR* d = opendir(dir_.c_str());
    if (d != nullptr) {
      while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        const bool ours = (name.starts_with("snapshot-") && name.ends_with(".rdb")) || name.ends_with(".tmp") ||
                          (name.starts_with("log-") && name.ends_with(".seg"));
        if (!ours || std::find(keep.begin(), keep.end(), name) != keep.end()) continue;
        if (unlinkat(dirfd(d), name.c_str(), 0) == 0) removed += (removed.empty() ? "" : ", ") + name;
      }
      closedir(d);
    }
  }
  const uint64_t end = rec->committed_end;
  std::vector<ReplicationLog::SegmentInfo> segs;
  for (const auto& ms : m->segments) segs.push_back({ms.file, ms.first_offset, ms.size});
  std::shared_ptr<Snapshot> snap;
  if (m->snapshot) {
    snap = Snapshot::open(dir_ + "/" + m->snapshot->file, m->snapshot->bytes, m->snapshot->offset, m->replid,
                          m->snapshot->created_unix, m->snapshot->prefix);
  }
  log_.reopen(segs, segs.empty() ? end + 1 : m->log_first_offset, end + 1);
  committed_end_ = end;
  snapshot_ = std::move(snap);
  replid_ = m->replid;
  if (m->second_offset >= 1) {
    replid2_ = m->replid2;
    second_offset_ = m->second_offset;
  } else {
    replid2_.clear();
    second_offset_ = -1;
  }
  lineage_start_ = m->lineage_start;
  upstream_ = {rec->upstream_replid, rec->upstream_offset};
  record_.reset();
  record_.emplace(CommitRecord::open(dir_));
  record_->set_upstream_replid(upstream_.replid);
  record_->write(committed_end_, upstream_.offset);
  write_manifest_now();
  what = "reopened lineage " + (replid_.empty() ? std::string("(none yet)") : replid_) + " from " + dir_ +
         ": snapshot at offset " + (snapshot_ ? std::to_string(snapshot_->offset()) : std::string("-")) +
         ", log " + std::to_string(log_.first_offset()) + "-" + std::to_string(committed_end_) +
         (upstream_.replid.empty() ? std::string() : ", upstream " + upstream_.replid + " at " +
                                                         std::to_string(upstream_.offset)) +
         (removed.empty() ? std::string() : "; removed what it does not name: " + removed);
  return Reopen::kReopened;
}

void LineageStore::close_cleanly() {
  if (!record_) return;
  log_.sync_all();
  record_->sync();
  write_manifest_now();
}

Manifest LineageStore::manifest() const {
  Manifest m;
  const uint64_t end = committed_end_;
  m.replid = replid_;
  if (!replid2_.empty()) {
    m.replid2 = replid2_;
    m.second_offset = second_offset_;
  }
  m.lineage_start = snapshot_ ? lineage_start_ : 0;
  if (snapshot_) {
    const std::string& path = snapshot_->path();
    m.snapshot = ManifestSnapshot{path.substr(path.rfind('/') + 1), snapshot_->offset(), snapshot_->prefix(),
                                  snapshot_->size(), snapshot_->created_unix()};
  }
  m.log_first_offset = std::max(log_.first_offset(), trim_floor_);
  // Only committed bytes (M1): segments past the committed end are left out,
  // the last one is cut at it; those about to be trimmed too.
  // A segment that starts right after the committed end is listed, empty:
  // it is in a manifest before the commit that first reaches into it (M2).
  for (const auto& seg : log_.segments()) {
    if (seg.first_offset < trim_floor_) continue;
    if (seg.first_offset > end + 1) break;
    ManifestSegment ms{seg.file, seg.first_offset, std::min(seg.size, end + 1 - seg.first_offset)};
    m.segments.push_back(std::move(ms));
  }
  if (m.segments.empty()) m.log_first_offset = end + 1;
  m.upstream_replid = upstream_.replid;
  m.upstream_offset = upstream_.offset;
  return m;
}

void LineageStore::write_manifest_now() {
  backlog::write_manifest(dir_, manifest());
  persisted_generation_ = log_.segment_list_generation();
  persist_dirty_ = false;
  persist_error_.clear();
}

bool LineageStore::segments_changed() const { return persisted_generation_ != log_.segment_list_generation(); }

void LineageStore::persist() {
  try {
    write_manifest_now();
  } catch (const std::exception& e) {
    persist_dirty_ = true;
    persist_error_ = std::string("cannot write the manifest: ") + e.what();
  }
}

void LineageStore::trim_to(uint64_t keep_from) {
  // Which segments go (whole ones, never the last), as trim_before decides.
  const uint64_t first_kept = log_.first_kept_by_trim(keep_from);
  if (first_kept == log_.first_offset()) return;
  if (record_) {
    // The manifest stops listing them first: a crash in between leaves stray
    // files before the log (check_files warns), never a manifest naming files
    // that are gone. No manifest, no trim.
    trim_floor_ = first_kept;
    persist();
    trim_floor_ = 0;
    if (persist_dirty_) throw LogError(persist_error_ + " (old log segments kept until it can be written)");
  }
  log_.trim_before(keep_from);
}

void LineageStore::flush() {
  if (persist_dirty_) persist();
}

void LineageStore::record_commit(uint64_t end, uint64_t upstream_offset) {
  if (!record_) return;  // before reset(): nothing on disk to describe
  // A new segment goes into a manifest at the commit point before this one
  // (listed empty), then the record moves into it: a crash in between leaves
  // a record that is never older than the manifest and never points into a
  // segment the manifest does not list.
  if (persist_dirty_ || segments_changed()) write_manifest_now();
  record_->write(end, upstream_offset);
}

void LineageStore::append(std::string_view bytes) { log_.append(bytes); }

void LineageStore::commit(uint64_t upstream_offset) {
  const uint64_t end = log_.last_offset();
  record_commit(end, upstream_offset);  // first: what replicas are shown is always on record
  upstream_.offset = upstream_offset;
  if (committed_end_ == end) return;
  committed_end_ = end;
  if (on_commit_) on_commit_();
}

void LineageStore::commit_own() {
  const uint64_t end = log_.last_offset();
  if (committed_end_ == end) return;
  record_commit(end, upstream_.offset);
  committed_end_ = end;
  if (on_commit_) on_commit_();
}

uint64_t LineageStore::rollback(std::string& problems) {
  uint64_t dropped = log_.last_offset() - committed_end_;
  problems = dropped ? log_.truncate_to(committed_end_ + 1) : std::string();
  if (dropped && segments_changed()) persist();
  return dropped;
}

void LineageStore::set_upstream(std::string replid, uint64_t offset) {
  upstream_.replid = std::move(replid);
  upstream_.offset = offset;
  if (!record_) return;
  try {
    record_->set_upstream_replid(upstream_.replid);
    record_->write(committed_end_, offset);
  } catch (const std::exception& e) {
    persist_error_ = std::string("cannot write the commit record: ") + e.what();
  }
  persist();
}

void LineageStore::forget_upstream() {
  upstream_.replid.clear();
  set_upstream({}, upstream_.offset);
}

void LineageStore::begin_lineage(std::shared_ptr<Snapshot> snapshot, std::string& problems) {
  if (!snapshot || snapshot->offset() != committed_end_ || has_uncommitted()) {
    throw std::logic_error("LineageStore::begin_lineage: the snapshot is not at the committed end");
  }
  std::shared_ptr<Snapshot> old = std::move(snapshot_);
  snapshot_ = std::move(snapshot);
  replid_ = snapshot_->replid();
  replid2_.clear();
  second_offset_ = -1;
  lineage_start_ = snapshot_->offset();
  problems.clear();
  // The manifest names the new snapshot before the old file goes.
  if (record_) persist();
  if (old) old->discard();
  try {
    trim_to(snapshot_->offset() + 1);
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
  // The manifest names the new file before the old one goes (its readers keep
  // their fd).
  if (record_) persist();
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
    trim_to(keep_from);
  } catch (const std::exception& e) {
    problems = e.what();
  }
  return before - log_.bytes_on_disk();
}

bool LineageStore::can_continue(std::string_view replid, uint64_t offset) const {
  if (!snapshot_ || offset < psync_floor() || offset > committed_end_ + 1) return false;
  if (replid == replid_) return true;
  return !replid2_.empty() && replid == replid2_ && static_cast<int64_t>(offset) <= second_offset_;
}

void LineageStore::switch_replid(std::string new_replid) {
  if (!snapshot_ || has_uncommitted() || new_replid == replid_ || new_replid.size() != 40) {
    throw std::logic_error("LineageStore::switch_replid: no lineage, bytes uncommitted, or not a new replid");
  }
  const std::string old_replid2 = replid2_;
  const int64_t old_second = second_offset_;
  replid2_ = replid_;
  second_offset_ = static_cast<int64_t>(committed_end_ + 1);
  std::string old_replid = std::exchange(replid_, std::move(new_replid));
  // The manifest names the new replid before anything is committed under it:
  // a restart must never reopen those bytes under the old one.
  try {
    if (record_) write_manifest_now();
  } catch (...) {
    replid_ = std::move(old_replid);
    replid2_ = old_replid2;
    second_offset_ = old_second;
    throw;
  }
}

}  // namespace psync::backlog
