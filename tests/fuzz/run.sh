#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in <repo>/build-fuzz (apart from the main g++
# build) and runs each one for SECONDS (default 60) from its seed corpus. Exits non-zero on
# the first crash, sanitizer report, timeout or out-of-memory; the input that caused it is
# saved under build-fuzz/artifacts/ and its path printed.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# New inputs the fuzzer finds go to build-fuzz/corpus/<target>/ (not the source tree); to
# keep an interesting one, copy it to tests/fuzz/corpus/<target>/.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="${PSYNC_FUZZ_BUILD:-$ROOT/build-fuzz}"
SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(fuzz_request_parser fuzz_legacy_stream fuzz_payload_reader fuzz_http_request fuzz_status_render
           fuzz_aligner fuzz_stream_tracker)
fi
case "$SECONDS_EACH" in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

command -v clang++ >/dev/null || { echo "fuzz: clang++ is not installed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  > "$probe_dir/probe.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" 2>"$probe_dir/err"; then
  echo "fuzz: clang++ cannot link -fsanitize=fuzzer (on Debian 12: apt-get install libclang-rt-14-dev):" >&2
  head -5 "$probe_dir/err" >&2
  exit 1
fi

echo "==> fuzz build (clang, libFuzzer + ASan + UBSan) in $BUILD" >&2
cmake -S "$HERE" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$BUILD/artifacts"
status=0
for t in "${TARGETS[@]}"; do
  seeds="$HERE/corpus/$t"
  work="$BUILD/corpus/$t"
  mkdir -p "$work"
  log="$BUILD/$t.log"
  echo "==> $t: ${SECONDS_EACH} s from $(find "$seeds" -type f | wc -l) seeds (log: $log)" >&2
  # The working corpus is listed first: new inputs are written there, never to the seeds.
  if "$BUILD/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
       -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" "$work" "$seeds" >"$log" 2>&1; then
    grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$log" | tail -2 >&2 || true
  else
    status=1
    echo "FUZZ FAILURE in $t:" >&2
    grep -E 'FUZZ CHECK FAILED|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error:|Test unit written to' \
      "$log" | head -20 >&2 || true
    tail -40 "$log" >&2
  fi
done
exit $status
