#include <doctest/doctest.h>

#include "proxy/replica_session.h"

using namespace psync::proxy;

TEST_CASE("replica timeout by the socket: only bytes unacknowledged for the timeout with no ACK at all") {
  constexpr uint64_t kTimeout = 60'000;
  // A vanished host: bytes in flight for the timeout, no ACK for as long.
  CHECK(peer_vanished(60'000, 70'000, kTimeout));
  // A live peer that does not read (stopped, loading an RDB): its kernel answers window
  // probes, so its last ACK is recent however long the bytes wait.
  CHECK_FALSE(peer_vanished(600'000, 2'000, kTimeout));
  // Bytes just sent after a quiet time: the last ACK is old, but they are not overdue yet.
  CHECK_FALSE(peer_vanished(500, 300'000, kTimeout));
  CHECK_FALSE(peer_vanished(59'999, 300'000, kTimeout));
}
