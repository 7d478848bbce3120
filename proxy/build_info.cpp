#include "proxy/build_info.h"

#ifndef PSYNC_BUILD_TAG
#define PSYNC_BUILD_TAG ""
#endif
#ifndef PSYNC_BUILD_FAILS_ADOPTION
#define PSYNC_BUILD_FAILS_ADOPTION 0
#endif

namespace psync::proxy {

std::string build_id() {
  std::string tag = PSYNC_BUILD_TAG;
  return tag.empty() ? std::string(PSYNC_PROXY_VERSION) : std::string(PSYNC_PROXY_VERSION) + "+" + tag;
}

bool build_fails_adoption() { return PSYNC_BUILD_FAILS_ADOPTION != 0; }

}  // namespace psync::proxy
