#!/usr/bin/env bash
# Installs what is missing, builds (Release) into build/, and runs the proxy
# with the given flags. Without --upstream: an embedded demo (a local SYNC-only
# master, the proxy in front of it, one Redis 7 replica attached).
set -euo pipefail
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"

ensure_packages "${PACKAGES[@]}"
build build Release >&2

for arg in "$@"; do
  case "$arg" in
    --upstream|--upstream=*|--help|-h|--version) exec "$ROOT/build/psync-proxy" "$@" ;;
  esac
done
exec "$ROOT/deploy/demo.sh" "$@"
