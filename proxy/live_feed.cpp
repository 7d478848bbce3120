#include "proxy/live_feed.h"

#include "protocol/text.h"
#include "proxy/log.h"
#include "proxy/proxy.h"
#include "proxy/refresher.h"
#include "proxy/standby.h"

#include <cstring>

namespace psync::proxy {

namespace {

LinkOptions live_link_options(Proxy& proxy, LiveFeed::Source source) {
  const Config& c = proxy.config();
  LinkOptions o;
  o.name = "upstream";
  o.address = c.upstream;
  o.masterauth = c.masterauth;
  o.masteruser = c.masteruser;
  o.listening_port = c.port;
  o.mode = c.upstream_mode;
  if (source == LiveFeed::Source::kActive) {
    // The pair shares its replicas' password: the standby is one of them.
    o.name = "active";
    o.address = c.standby_of;
    o.masterauth = c.requirepass;
    o.masteruser = c.requirepass.empty() ? std::string() : c.requireuser;
    o.mode = UpstreamMode::kPsync;
    o.rdb_tag = "active";
  }
  o.connect_timeout_s = c.upstream_connect_timeout_s;
  o.read_timeout_s = c.upstream_timeout_s;
  o.dir = c.dir;
  o.counters = &proxy.counters();
  return o;
}

}  // namespace

struct LiveFeed::Commit {
  uv_work_t req;
  LiveFeed* self;
  std::unique_ptr<backlog::SnapshotWriter> writer;
  std::string replid;
  uint64_t offset;
  std::optional<backlog::UpstreamPosition> full_resync;
  std::shared_ptr<backlog::Snapshot> snapshot;
  std::string error;
};

LiveFeed::LiveFeed(Proxy& proxy, Source source)
    : proxy_(proxy), source_(source),
      link_(std::make_unique<Link>(proxy.loop(), live_link_options(proxy, source), *this)) {}

LiveFeed::LiveFeed(Proxy& proxy, std::unique_ptr<Link> streaming)
    : proxy_(proxy), source_(Source::kMaster), link_(std::move(streaming)) {
  link_->rebind(*this, "upstream");
}

LiveFeed::~LiveFeed() = default;

void LiveFeed::stop() {
  stopped_ = true;
  link_->stop();
}

const std::string& LiveFeed::master_replid() const { return proxy_.store().upstream().replid; }

uint64_t LiveFeed::master_offset() const { return proxy_.store().upstream().offset; }

std::optional<backlog::UpstreamPosition> LiveFeed::resume_point() {
  // A mirror resumes where its own log ends: the offsets are the active's.
  if (mirrors()) {
    const backlog::LineageStore& store = proxy_.store();
    // (A proxy that was active before, back as a standby, resumes its own
    // lineage the same way: the new active may hold it as replid2.)
    if (store.replid().empty() || mirror_broken_) return std::nullopt;
    return backlog::UpstreamPosition{store.replid(), store.committed_end()};
  }
  return proxy_.store().upstream();
}

bool LiveFeed::mirror_mismatch(const std::string& what) {
  LOG_ERROR("active", "the active's stream cannot be mirrored: %s; a full resync from it follows", what.c_str());
  proxy_.store().forget_upstream();
  mirror_broken_ = true;
  return false;
}

void LiveFeed::on_rdb(std::unique_ptr<backlog::SnapshotWriter> rdb,
                      std::optional<backlog::UpstreamPosition> full_resync) {
  if (mirrors() && !full_resync) {
    rdb->abort();
    link_->fail("the active answered SYNC-style (no +FULLRESYNC): it is not a psync-proxy");
    return;
  }
  proxy_.hold_own_pings(true);
  auto* c = new Commit;
  c->req.data = c;
  c->self = this;
  c->writer = std::move(rdb);
  if (mirrors()) {
    // The active's lineage, at the active's offset.
    c->replid = full_resync->replid;
    c->offset = full_resync->offset;
    // A snapshot file of this replid may be in place (a full resync of the
    // same lineage again): the new one is renamed over its path.
    if (const auto& old = proxy_.store().snapshot()) old->discard();
  } else {
    c->replid = random_replid();
    c->offset = proxy_.store().committed_end();  // nothing is uncommitted between streams
  }
  c->full_resync = std::move(full_resync);
  committing_ = c;
  uv_queue_work(proxy_.loop(), &c->req, on_commit_work, on_commit_done);
}

void LiveFeed::on_commit_work(uv_work_t* req) {
  auto* c = static_cast<Commit*>(req->data);
  try {
    c->snapshot = c->writer->commit(c->replid, c->offset);
  } catch (const std::exception& e) {
    c->error = e.what();
  }
}

void LiveFeed::on_commit_done(uv_work_t* req, int /*status*/) {
  std::unique_ptr<Commit> c(static_cast<Commit*>(req->data));
  LiveFeed* self = c->self;
  self->committing_ = nullptr;
  if (self->stopped_) return;  // (a retired feed: the pings are the current feed's to hold)
  self->proxy_.hold_own_pings(false);
  if (!c->error.empty()) {
    self->proxy_.storage_failed("cannot store the snapshot: " + c->error);
    self->link_->fail("cannot store the snapshot: " + c->error);
    return;
  }
  self->proxy_.storage_ok();
  // A PSYNC'd transfer can be resumed later; a SYNC one cannot.
  const uint64_t master_base = c->full_resync ? c->full_resync->offset : 0;
  if (self->mirrors()) {
    self->mirror_broken_ = false;
    // The log starts over at the active's offset.
    try {
      self->proxy_.restart_log_at(master_base + 1);
    } catch (const std::exception& e) {
      self->proxy_.storage_failed(std::string("cannot start the log over: ") + e.what());
      self->link_->fail(std::string("cannot start the log over: ") + e.what());
      return;
    }
  }
  self->proxy_.begin_lineage(std::move(c->snapshot));
  self->proxy_.store().set_upstream(c->full_resync ? c->full_resync->replid : std::string(), master_base);
  self->link_->start_streaming(master_base);
}

bool LiveFeed::on_continue(const std::string& replid, uint64_t offset) {
  backlog::LineageStore& store = proxy_.store();
  if (mirrors() && replid != store.replid()) {
    // The active goes on under a new replid: it took this lineage over (this
    // proxy may be the old active, back as its standby). It accepted our
    // offset for the old one, so the mirror switches as a Redis replica does:
    // the old replid becomes replid2.
    if (!protocol::is_replid(replid)) return mirror_mismatch("the active continued without a replid");
    try {
      const std::string old = store.replid();
      store.switch_replid(replid);
      LOG_INFO("active", "the active went on as %s (lineage %s taken over): the mirror follows, replid2 %s up to "
               "offset %llu", replid.c_str(), old.c_str(), old.c_str(),
               static_cast<unsigned long long>(store.second_offset()));
    } catch (const std::exception& e) {
      proxy_.storage_failed(std::string("cannot record the new replid: ") + e.what());
      return mirror_mismatch(std::string("cannot switch to the active's new replid: ") + e.what());
    }
  }
  proxy_.store().set_upstream(replid, offset);
  LOG_INFO("upstream", "the lineage goes on from master offset %llu: replicas keep their place",
           static_cast<unsigned long long>(offset + 1));
  return true;
}

bool LiveFeed::on_stream(std::string_view bytes, bool at_boundary, uint64_t master_offset) {
  // After a failed append the link ends (false), the store rolls back to the
  // last commit, and a resumed link starts there: nothing is skipped.
  backlog::LineageStore& store = proxy_.store();
  const uint64_t first = store.log().next_offset();
  if (mirrors() && at_boundary && first + bytes.size() - 1 != master_offset) {
    return mirror_mismatch("bytes up to offset " + std::to_string(master_offset) + " would end the log at " +
                           std::to_string(first + bytes.size() - 1));
  }
  try {
    store.append(bytes);
    if (at_boundary) store.commit(master_offset);
    proxy_.storage_ok();
  } catch (const std::exception& e) {
    proxy_.storage_failed(std::string("cannot append to the replication log: ") + e.what());
    return false;
  }
  // A standby's own master link is placed in, then tracked against, this
  // stream (proxy/standby.h).
  if (mirrors()) {
    Standby* standby = proxy_.standby();
    if (standby && standby->shadow().wants_every_piece()) standby->shadow().on_live_piece(bytes, at_boundary, first);
  }
  // A takeover marker naming this lineage (proxy/standby.h): superseded.
  if (!mirrors() && at_boundary &&
      memmem(bytes.data(), bytes.size(), Refresher::kChannel, std::strlen(Refresher::kChannel)) != nullptr) {
    proxy_.check_takeover_markers(bytes);
    if (!proxy_.superseded_by().empty()) return false;  // the link ends, and is not retried (on_lost)
  }
  // A refresh in progress looks for its markers in the live stream.
  Refresher& refresher = proxy_.refresher();
  if (at_boundary && refresher.active() &&
      memmem(bytes.data(), bytes.size(), Refresher::kChannel, std::strlen(Refresher::kChannel)) != nullptr) {
    refresher.on_live_bytes(bytes, first);
  }
  return true;
}

bool LiveFeed::on_ping(uint64_t master_offset) {
  backlog::LineageStore& store = proxy_.store();
  if (mirrors()) {
    // The active's own PING is part of its log: it goes into the mirror as
    // it was sent (the only PING a psync-proxy writes).
    if (store.has_uncommitted() || store.committed_end() + kOwnPing.size() != master_offset) {
      return mirror_mismatch("a PING of " + std::to_string(master_offset - store.committed_end()) +
                             " bytes (a psync-proxy's is " + std::to_string(kOwnPing.size()) + ")");
    }
    try {
      store.append(kOwnPing);
      store.commit(master_offset);
      proxy_.storage_ok();
    } catch (const std::exception& e) {
      proxy_.storage_failed(std::string("cannot append to the replication log: ") + e.what());
      return false;
    }
    return true;
  }
  // A dropped PING adds nothing to the log but is part of the master's
  // stream: the resume point moves past it (and the ACK counts it).
  store.commit(master_offset);
  return true;
}

uint64_t LiveFeed::ack_offset() { return proxy_.store().upstream().offset; }

void LiveFeed::on_lost(const std::string& /*why*/, bool was_streaming) {
  if (was_streaming) proxy_.upstream_lost();
  if (was_streaming && mirrors()) {
    // A command the active sent in part is gone from the log; the tracker
    // forgets its start too (the active sends it again whole).
    if (Standby* standby = proxy_.standby()) standby->shadow().on_live_rollback();
  }
  if (!proxy_.superseded_by().empty()) link_->stop();  // nothing more of the master: see Proxy::superseded
}

void LiveFeed::on_storage_error(const std::string& what) { proxy_.storage_failed(what); }

void LiveFeed::on_bad_stream() {
  proxy_.store().forget_upstream();
  mirror_broken_ = mirrors();
}

}  // namespace psync::proxy
