#include "proxy/live_feed.h"

#include "proxy/log.h"
#include "proxy/proxy.h"
#include "proxy/refresher.h"

#include <cstring>

namespace psync::proxy {

namespace {

LinkOptions live_link_options(Proxy& proxy) {
  const Config& c = proxy.config();
  LinkOptions o;
  o.name = "upstream";
  o.address = c.upstream;
  o.masterauth = c.masterauth;
  o.masteruser = c.masteruser;
  o.listening_port = c.port;
  o.mode = c.upstream_mode;
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

LiveFeed::LiveFeed(Proxy& proxy) : proxy_(proxy), link_(proxy.loop(), live_link_options(proxy), *this) {}

LiveFeed::~LiveFeed() = default;

void LiveFeed::stop() {
  stopped_ = true;
  link_.stop();
}

const std::string& LiveFeed::master_replid() const { return proxy_.store().upstream().replid; }

uint64_t LiveFeed::master_offset() const { return proxy_.store().upstream().offset; }

std::optional<backlog::UpstreamPosition> LiveFeed::resume_point() { return proxy_.store().upstream(); }

void LiveFeed::on_rdb(std::unique_ptr<backlog::SnapshotWriter> rdb,
                      std::optional<backlog::UpstreamPosition> full_resync) {
  proxy_.hold_own_pings(true);
  auto* c = new Commit;
  c->req.data = c;
  c->self = this;
  c->writer = std::move(rdb);
  c->replid = random_replid();
  c->offset = proxy_.store().committed_end();  // nothing is uncommitted between streams
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
  self->proxy_.hold_own_pings(false);
  if (self->stopped_) return;
  if (!c->error.empty()) {
    self->proxy_.storage_failed("cannot store the snapshot: " + c->error);
    self->link_.fail("cannot store the snapshot: " + c->error);
    return;
  }
  self->proxy_.storage_ok();
  // A PSYNC'd transfer can be resumed later; a SYNC one cannot.
  const uint64_t master_base = c->full_resync ? c->full_resync->offset : 0;
  self->proxy_.begin_lineage(std::move(c->snapshot));
  self->proxy_.store().set_upstream(c->full_resync ? c->full_resync->replid : std::string(), master_base);
  self->link_.start_streaming(master_base);
}

void LiveFeed::on_continue(const std::string& replid, uint64_t offset) {
  proxy_.store().set_upstream(replid, offset);
  LOG_INFO("upstream", "the lineage goes on from master offset %llu: replicas keep their place",
           static_cast<unsigned long long>(offset + 1));
}

bool LiveFeed::on_stream(std::string_view bytes, bool at_boundary, uint64_t master_offset) {
  // After a failed append the link ends (false), the store rolls back to the
  // last commit, and a resumed link starts there: nothing is skipped.
  backlog::LineageStore& store = proxy_.store();
  const uint64_t first = store.log().next_offset();
  try {
    store.append(bytes);
    if (at_boundary) store.commit(master_offset);
    proxy_.storage_ok();
  } catch (const std::exception& e) {
    proxy_.storage_failed(std::string("cannot append to the replication log: ") + e.what());
    return false;
  }
  // A refresh in progress looks for its markers in the live stream.
  Refresher& refresher = proxy_.refresher();
  if (at_boundary && refresher.active() &&
      memmem(bytes.data(), bytes.size(), Refresher::kChannel, std::strlen(Refresher::kChannel)) != nullptr) {
    refresher.on_live_bytes(bytes, first);
  }
  return true;
}

void LiveFeed::on_ping(uint64_t master_offset) {
  // A dropped PING adds nothing to the log but is part of the master's
  // stream: the resume point moves past it (and the ACK counts it).
  proxy_.store().commit(master_offset);
}

uint64_t LiveFeed::ack_offset() { return proxy_.store().upstream().offset; }

void LiveFeed::on_lost(const std::string& /*why*/, bool was_streaming) {
  if (was_streaming) proxy_.upstream_lost();
}

void LiveFeed::on_storage_error(const std::string& what) { proxy_.storage_failed(what); }

void LiveFeed::on_bad_stream() { proxy_.store().forget_upstream(); }

}  // namespace psync::proxy
