#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest: once on
# a Release build, once on an AddressSanitizer + UndefinedBehaviorSanitizer build.
set -euo pipefail
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"

ensure_packages "${PACKAGES[@]}" "${TEST_PACKAGES[@]}"
start=$(date +%s)

echo "==> Release build" >&2
build build Release
(cd "$ROOT/build" && ctest --output-on-failure -j2 --timeout 300)

echo "==> ASan + UBSan build" >&2
build build-asan Debug -DPSYNC_SANITIZE=ON
(cd "$ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j2 --timeout 300)

echo "==> fuzzing: each target for ${PSYNC_FUZZ_SECONDS:-30} s from its seed corpus" >&2
bash "$ROOT/tests/fuzz/run.sh" "${PSYNC_FUZZ_SECONDS:-30}"

echo "==> deployment files: shellcheck, yamllint, systemd-analyze" >&2
bash "$ROOT/deploy/check.sh"

echo "==> all tests passed in $(( $(date +%s) - start )) s" >&2
