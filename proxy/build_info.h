// Which build of the proxy this is. Compiled into each executable apart (not
// into the core library), so that the same sources make more than one build:
// the test suite's live restarts go from one build to another (psync-proxy
// and psync-proxy-alt differ only in their tag) and into one whose adoption
// of a handover always fails (psync-proxy-fail-adopt, a test build, never
// installed), to exercise the fallback.
#pragma once

#include <string>

namespace psync::proxy {

// "<version>" or "<version>+<tag>": in /status (proxy.build) and INFO.
std::string build_id();
// True only in the test build that refuses every handover (proxy/live_restart.h).
bool build_fails_adoption();

}  // namespace psync::proxy
