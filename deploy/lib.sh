# Shared by deploy/run.sh and deploy/test.sh: install what is missing, build.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the project builds and runs with (the demo included).
# shellcheck disable=SC2034  # used by the scripts that source this file
PACKAGES=(g++ cmake make pkg-config libuv1-dev libhiredis-dev nlohmann-json3-dev
          doctest-dev libcli11-dev libhttp-parser-dev libsystemd-dev libssl-dev openssl redis-server redis-tools curl)
# ... and the test suite: the status page in Chromium, the fuzzers (clang's
# libFuzzer), the checks of the deployment files, a Prometheus exporter that
# scrapes the proxy as a Redis master.
# shellcheck disable=SC2034
TEST_PACKAGES=(chromium clang libclang-rt-14-dev shellcheck yamllint systemd python3 prometheus-redis-exporter)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PACKAGE... : installs those not installed yet.
ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}" >&2
    as_root apt-get update -qq >&2
    # The redis-server package may try to start a system service: not needed here.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >&2
  fi
}

# build DIR BUILD_TYPE [extra cmake args...]
build() {
  local dir=$1 type=$2
  shift 2
  cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$ROOT/$dir" -j"$(nproc)"
}
