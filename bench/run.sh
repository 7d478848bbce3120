#!/usr/bin/env bash
# psync-proxy benchmarks: each scenario runs both sides (plain Redis
# replication and psync-proxy) in one run on this machine and prints ratios.
#
#   bench/run.sh            about 10 minutes on 2 cores
#   bench/run.sh --quick    about 1 minute: smaller sizes, fewer repeats
#   bench/run.sh --only 1,3 some scenarios only (for working on them)
#   BENCH_BUILD_DIR=dir     build there instead of build/ (for working on them)
#   BENCH_NO_BUILD=1        use what is built (for working on them)
#
# Installs what is missing (Debian packages), builds Release into build/,
# prints a Markdown table, writes bench/results/<timestamp>.json,
# bench/results/latest.json and the scenario 3 lag plot (PNG) next to them,
# and (full runs only) puts the table into bench/README.md.
# Everything runs on 127.0.0.1, each server on its own port and directory
# under one temp dir; every process is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=deploy/lib.sh
source "$ROOT/deploy/lib.sh"

QUICK=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (--quick, --only N,M)" >&2; exit 2 ;;
  esac
  shift
done

RUN_START=$(date +%s)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR="$ROOT/bench/results"
BUILD_DIR=${BENCH_BUILD_DIR:-build}
BIN="$ROOT/$BUILD_DIR/psync-proxy"
TOOLS="$ROOT/$BUILD_DIR/bench"

# ---------------------------------------------------------------- sizes
if [ "$QUICK" = 1 ]; then
  S1_REPEATS=1; S1_REQUESTS=20000
  S2_REPEATS=1; S2_BYTES=$((512 * 1000 * 1000))
  S3_REPLICAS=16; S3_KILLS=5; S3_KEYS=5000; S3_SETTLE=0.3; S3_WARMUP=1
  S4_SMALL_KEYS=10000; S4_LARGE_KEYS=50000; S4_SMALL_COUNTS="1 8 32"; S4_LARGE_COUNTS="1 8"
  S5_REPEATS=1
  S6_MIN_TIME=0.1; S6_FILTER='paired/realistic/'; S6_REPS=3
  S4_SETTLE=0.5
  S7_KEYS=20000; S7_WRITES=100000
else
  S1_REPEATS=3; S1_REQUESTS=50000
  S2_REPEATS=3; S2_BYTES=$((2 * 1000 * 1000 * 1000))
  S3_REPLICAS=16; S3_KILLS=5; S3_KEYS=20000; S3_SETTLE=1; S3_WARMUP=2
  S4_SMALL_KEYS=100000; S4_LARGE_KEYS=1000000; S4_SMALL_COUNTS="1 8 32"; S4_LARGE_COUNTS="1 8"
  S5_REPEATS=3
  S6_MIN_TIME=0.2; S6_FILTER='realistic|set-3B|set-30B'; S6_REPS=5
  S4_SETTLE=1
  S7_KEYS=50000; S7_WRITES=400000
fi
VALUE_SIZE=1000   # DEBUG POPULATE value bytes: 100k keys ~ 100 MB, 1M keys ~ 1 GB

log() { printf '==> [%3ds] %s\n' "$(( $(date +%s) - RUN_START ))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# ---------------------------------------------------------------- set-up
ensure_packages libbenchmark-dev gnuplot-nox jq python3 iproute2
WORK=$(mktemp -d /tmp/psync-bench.XXXXXX)
RES="$WORK/results"
mkdir -p "$RES" "$RESULTS_DIR"
PIDS=()
declare -A RPID=() RPORT=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK" "/dev/shm/$(basename "$WORK")-s2"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building Release into $BUILD_DIR/"
if [ -n "${BENCH_NO_BUILD:-}" ]; then
  log "BENCH_NO_BUILD: using what $BUILD_DIR/ holds"
elif ! build "$BUILD_DIR" Release >"$WORK/build.log" 2>&1; then
  # Others may be mid-change in tests/: the benchmark needs only these.
  log "full build failed; building the benchmark's targets only"
  cmake --build "$ROOT/$BUILD_DIR" -j"$(nproc)" --target psync-proxy bench_parser bench_capacity bench_probe \
    >>"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; die "build"; }
fi
[ -x "$TOOLS/bench_probe" ] || die "$BUILD_DIR/bench/ tools missing: is libbenchmark-dev installed?"

# Ports: one free loopback port after another, from a random base.
NEXT_PORT=$(( 21000 + RANDOM % 8000 ))
alloc_port() {  # alloc_port VAR
  while ss -Hltn "sport = :$NEXT_PORT" 2>/dev/null | grep -q .; do NEXT_PORT=$((NEXT_PORT + 1)); done
  printf -v "$1" '%s' "$NEXT_PORT"
  NEXT_PORT=$((NEXT_PORT + 1))
}

wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 0.05
  done
}

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop_pid() {
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

rcli() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# start_redis NAME [config lines...]: a Redis 7 on its own port and dir.
start_redis() {
  local name=$1 port dir
  shift
  alloc_port port
  dir="$WORK/$name"
  mkdir -p "$dir"
  {
    echo "port $port"
    echo "bind 127.0.0.1"
    echo "dir $dir"
    echo 'save ""'
    echo "appendonly no"
    echo "enable-debug-command local"
    echo "shutdown-timeout 0"
    # DEBUG POPULATE values are zero-padded: compressed, a 1 GB dataset
    # would make an RDB of a few MB. Uncompressed, the RDB is the dataset's size.
    echo "rdbcompression no"
    local line
    for line in "$@"; do echo "$line"; done
  } >"$dir/redis.conf"
  redis-server "$dir/redis.conf" >"$dir/redis.log" 2>&1 &
  RPID[$name]=$!
  RPORT[$name]=$port
  PIDS+=("$!")
  wait_until 20 "redis $name" rcli "$port" ping
}
stop_redis() {
  local name=$1
  stop_pid "${RPID[$name]}"
  rm -rf "${WORK:?}/$name"
  unset "RPID[$name]" "RPORT[$name]"
}

# The SYNC-only master: a Redis 7 with PSYNC renamed away, disk-based SYNC.
start_master() {
  start_redis "$1" 'rename-command PSYNC ""' "repl-diskless-sync no"
}

declare -A PPID_OF=() PPORT=() PSTATUS=()
start_proxy() {  # start_proxy NAME UPSTREAM_PORT [EXTRA FLAGS...]
  local name=$1 up=$2 port sport
  shift 2
  alloc_port port
  alloc_port sport
  mkdir -p "$WORK/$name"
  "$BIN" --upstream "127.0.0.1:$up" --port "$port" --status-port "$sport" --dir "$WORK/$name/data" \
    --log-level warn "$@" 2>"$WORK/$name/proxy.log" &
  PPID_OF[$name]=$!
  PIDS+=("$!")
  PPORT[$name]=$port
  PSTATUS[$name]=$sport
  # /status answers at once; /healthz only once a snapshot exists.
  wait_until 20 "proxy $name" curl -sf "http://127.0.0.1:$sport/status"
}
proxy_has_snapshot() {
  curl -sf "http://127.0.0.1:${PSTATUS[$1]}/status" | jq -e '.snapshot != null and .upstream.link_up' >/dev/null
}
stop_proxy() {
  stop_pid "${PPID_OF[$1]}"
  rm -rf "${WORK:?}/$1"
}

proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
reset_peak_rss() { echo 5 >"/proc/$1/clear_refs"; }
info_field() { rcli "$1" info "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k { print $2 }'; }

populate() {  # populate PORT KEYS
  [ "$2" -gt 0 ] || return 0
  rcli "$1" debug populate "$2" key "$VALUE_SIZE" >/dev/null
}

# pin CPU PID: every thread of PID on that CPU (on machines with 2+ CPUs).
PIN0=()
[ "$(nproc)" -ge 2 ] && PIN0=(taskset -c 0)
pin() {
  [ "$(nproc)" -ge 2 ] || return 0
  taskset -a -pc "$1" "$2" >/dev/null
}


# ================================================================ scenario 1
# Catch-up lag: writers load the master; one replica attached directly, one
# through the proxy; from the writers' end, until each holds the final state.
scenario1() {
  log "scenario 1: catch-up lag ($S1_REPEATS x, $S1_REQUESTS requests per test per writer)"
  local rep reps=()
  for rep in $(seq "$S1_REPEATS"); do
    start_master s1m
    populate "${RPORT[s1m]}" 10000
    start_proxy s1p "${RPORT[s1m]}"
    wait_until 60 "the s1 proxy's snapshot" proxy_has_snapshot s1p
    start_redis s1direct "replicaof 127.0.0.1 ${RPORT[s1m]}"
    start_redis s1proxied "replicaof 127.0.0.1 ${PPORT[s1p]}"
    "$TOOLS/bench_probe" wait-synced --ports "${RPORT[s1direct]},${RPORT[s1proxied]}" --timeout 60 >/dev/null \
      || die "s1 replicas did not sync"
    # Both replicas share one core, so that neither gets more CPU than the
    # other; the master, the writers and the proxy share the other one (the
    # proxy's work comes out of the master's side, as on a machine of its own
    # in front of the replicas).
    pin 1 "${RPID[s1direct]}"
    pin 1 "${RPID[s1proxied]}"
    pin 0 "${RPID[s1m]}"
    pin 0 "${PPID_OF[s1p]}"
    local forks0 db wpids=()
    forks0=$(info_field "${RPORT[s1m]}" stats total_forks)
    # The writers: pipelined, SET/INCR/LPUSH/HSET, each in its own db.
    local t_start
    t_start=$(date +%s%N)
    for db in 0 1 2; do
      "${PIN0[@]}" redis-benchmark -h 127.0.0.1 -p "${RPORT[s1m]}" --dbnum "$db" -t set,incr,lpush,hset \
        -n "$S1_REQUESTS" -P 32 -c 4 -r 100000 -d 64 -q >"$WORK/s1-writer-$db.log" 2>&1 &
      wpids+=("$!")
      PIDS+=("$!")
    done
    local p
    for p in "${wpids[@]}"; do wait "$p" || die "redis-benchmark failed"; forget_pid "$p"; done
    local t0
    t0=$(date +%s%N)
    "$TOOLS/bench_probe" catchup --master "${RPORT[s1m]}" \
      --replicas "${RPORT[s1direct]},${RPORT[s1proxied]}" --t0-ns "$t0" --timeout 300 >"$WORK/s1-$rep.json" \
      || die "scenario 1: the replicas do not hold the master's state ($(cat "$WORK/s1-$rep.json"))"
    local forks1 direct proxied
    forks1=$(info_field "${RPORT[s1m]}" stats total_forks)
    direct=$(jq ".seconds[\"${RPORT[s1direct]}\"]" "$WORK/s1-$rep.json")
    proxied=$(jq ".seconds[\"${RPORT[s1proxied]}\"]" "$WORK/s1-$rep.json")
    log "  run $rep: writers took $(( (t0 - t_start) / 1000000 )) ms; catch-up direct ${direct}s, via proxy ${proxied}s"
    reps+=("$(jq -n --argjson d "$direct" --argjson p "$proxied" \
      --argjson w "$(( (t0 - t_start) / 1000000 ))" --argjson f "$((forks1 - forks0))" \
      --argjson c "$(jq -c . "$WORK/s1-$rep.json")" \
      '{direct_s: $d, proxy_s: $p, writers_ms: $w, master_forks_during_load: $f, probe: $c}')")
    stop_redis s1proxied
    stop_redis s1direct
    stop_proxy s1p
    stop_redis s1m
  done
  printf '%s\n' "${reps[@]}" | jq -s --argjson n "$S1_REQUESTS" \
    '{requests_per_test_per_writer: $n, writers: 3, tests: ["set","incr","lpush","hset"], pipeline: 32, runs: .}' \
    >"$RES/s1.json"
}

# ================================================================ scenario 2
# Proxy capacity: a scripted upstream replays a prepared stream as fast as the
# socket takes it; sinks read as fast as they can.
scenario2() {
  log "scenario 2: proxy capacity ($S2_REPEATS x $((S2_BYTES / 1000000)) MB with 1 replica, half that with 8)"
  # A small valid RDB, from a real redis-server.
  start_redis s2rdb
  rcli "${RPORT[s2rdb]}" set hello world >/dev/null
  rcli "${RPORT[s2rdb]}" --rdb "$WORK/s2.rdb" >/dev/null 2>&1
  stop_redis s2rdb
  local variant sinks rep runs=() bytes data where tls
  # Certificates for the TLS rows: a CA, the proxy's, the sinks'.
  local certs="$WORK/s2certs"
  mkdir -p "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/ca.key" -out "$certs/ca.crt" -days 2 \
    -subj "/CN=bench CA" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -keyout "$certs/proxy.key" -out "$certs/proxy.csr" -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
  openssl x509 -req -in "$certs/proxy.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial \
    -out "$certs/proxy.crt" -days 2 -copy_extensions copy >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -keyout "$certs/sink.key" -out "$certs/sink.csr" -subj "/CN=sink" >/dev/null 2>&1
  openssl x509 -req -in "$certs/sink.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial \
    -out "$certs/sink.crt" -days 2 >/dev/null 2>&1
  # 1 and 8 replicas with the data dir on the disk (as deployed), over plain
  # TCP and over TLS (--tls-port, the sinks decrypting all); 1 replica with the
  # data dir on tmpfs, for context: what the disk's filesystem costs.
  for variant in 1:disk:tcp 8:disk:tcp 1:disk:tls 8:disk:tls 1:tmpfs:tcp; do
    sinks=${variant%%:*}
    where=${variant#*:}
    tls=${where#*:}
    where=${where%%:*}
    bytes=$S2_BYTES
    [ "$sinks" -gt 1 ] && bytes=$((S2_BYTES / 2))
    for rep in $(seq "$S2_REPEATS"); do
      local up port sport plain dir="$WORK/s2p"
      data="$dir/data"
      [ "$where" = tmpfs ] && data="/dev/shm/$(basename "$WORK")-s2"
      alloc_port up
      alloc_port port
      alloc_port sport
      alloc_port plain
      local sink_tls=() proxy_tls=(--port "$port")
      if [ "$tls" = tls ]; then
        sink_tls=(--tls "$certs/ca.crt" "$certs/sink.crt" "$certs/sink.key")
        proxy_tls=(--port "$plain" --tls-port "$port" --tls-cert-file "$certs/proxy.crt"
                   --tls-key-file "$certs/proxy.key" --tls-ca-cert-file "$certs/ca.crt")
      fi
      rm -rf "$dir"
      mkdir -p "$dir"
      # Dirty pages of earlier scenarios would throttle the log's writes.
      timeout 60 sync || true
      "$TOOLS/bench_capacity" --listen "$up" --proxy-port "$port" --rdb "$WORK/s2.rdb" --sinks "$sinks" \
        --bytes "$bytes" --ready-file "$dir/ready" --proxy-pid-file "$dir/pid" --timeout 120 "${sink_tls[@]}" \
        >"$dir/result.json" 2>"$dir/capacity.log" &
      local cap=$!
      PIDS+=("$cap")
      wait_until 30 "the scripted upstream" test -f "$dir/ready"
      "$BIN" --upstream "127.0.0.1:$up" "${proxy_tls[@]}" --status-port "$sport" --dir "$data" \
        --log-level warn 2>"$dir/proxy.log" &
      local proxy=$!
      PIDS+=("$proxy")
      echo "$proxy" >"$dir/pid"
      wait "$cap" || { cat "$dir/capacity.log" "$dir/proxy.log" >&2; die "scenario 2 run failed"; }
      forget_pid "$cap"
      stop_pid "$proxy"
      runs+=("$(jq -c --arg d "$where" --arg t "$tls" '. + {log_dir: $d, transport: $t}' "$dir/result.json")")
      log "  $sinks replica(s), log on $where, $tls, run $rep: $(jq -r '"\(.gbps_in) GB/s in, proxy CPU \(.proxy_cpu_s_per_gb) s/GB"' "$dir/result.json")"
      rm -rf "$dir" "$data"
    done
  done
  printf '%s\n' "${runs[@]}" | jq -s --argjson b "$S2_BYTES" \
    '{bytes_per_run_1_replica: $b, bytes_per_run_8_replicas: ($b / 2), runs: .}' >"$RES/s2.json"
}

# ================================================================ scenario 3
# Reconnect storm: 16 replicas under steady writes, each link killed N times.
scenario3() {
  log "scenario 3: reconnect storm ($S3_REPLICAS replicas x $S3_KILLS kills, $S3_KEYS keys of $VALUE_SIZE B)"
  local mode out="{}"
  for mode in direct proxy; do
    start_master s3m
    populate "${RPORT[s3m]}" "$S3_KEYS"
    local forks0 bytes0 target i ports=()
    forks0=$(info_field "${RPORT[s3m]}" stats total_forks)
    bytes0=$(info_field "${RPORT[s3m]}" stats total_net_output_bytes)
    target=${RPORT[s3m]}
    if [ "$mode" = proxy ]; then
      start_proxy s3p "${RPORT[s3m]}"
      wait_until 60 "the s3 proxy's snapshot" proxy_has_snapshot s3p
      target=${PPORT[s3p]}
    fi
    for i in $(seq "$S3_REPLICAS"); do
      start_redis "s3r$i" "replicaof 127.0.0.1 $target"
      ports+=("${RPORT[s3r$i]}")
    done
    local csv="$WORK/s3-$mode.csv"
    "$TOOLS/bench_probe" storm --master "${RPORT[s3m]}" --replicas "$(IFS=,; echo "${ports[*]}")" \
      --kills "$S3_KILLS" --rate 2000 --warmup "$S3_WARMUP" --settle "$S3_SETTLE" --csv "$csv" --timeout 240 \
      >"$WORK/s3-$mode.json" || { cat "$WORK/s3-$mode.json" >&2; die "scenario 3 ($mode) failed"; }
    local forks1 bytes1 syncs proxy_counters=null
    if [ "$mode" = proxy ]; then
      proxy_counters=$(curl -sf "http://127.0.0.1:${PSTATUS[s3p]}/status" | jq -c .counters)
    fi
    forks1=$(info_field "${RPORT[s3m]}" stats total_forks)
    bytes1=$(info_field "${RPORT[s3m]}" stats total_net_output_bytes)
    syncs=$(info_field "${RPORT[s3m]}" stats sync_full)
    log "  $mode: master forks $((forks1 - forks0)), bytes sent $(( (bytes1 - bytes0) / 1000000 )) MB, full syncs $syncs; links killed $(jq .links_killed "$WORK/s3-$mode.json")$([ "$mode" = proxy ] && echo ", proxy counters $proxy_counters")"
    out=$(jq --arg m "$mode" --argjson f "$((forks1 - forks0))" --argjson b "$((bytes1 - bytes0))" \
      --argjson s "$syncs" --argjson st "$(cat "$WORK/s3-$mode.json")" --argjson pc "$proxy_counters" \
      '.[$m] = {master_forks: $f, master_bytes_sent: $b, master_sync_full: $s, storm: $st, proxy_counters: $pc}' <<<"$out")
    cp "$csv" "$RES/s3-$mode.csv"
    cp "$csv.kills" "$RES/s3-$mode.csv.kills"
    for i in $(seq "$S3_REPLICAS"); do stop_redis "s3r$i"; done
    [ "$mode" = proxy ] && stop_proxy s3p
    stop_redis s3m
  done
  jq --argjson r "$S3_REPLICAS" --argjson k "$S3_KILLS" --argjson n "$S3_KEYS" --argjson v "$VALUE_SIZE" \
    '. + {replicas: $r, kills_per_replica: $k, dataset_keys: $n, value_bytes: $v, write_rate: 2000}' \
    <<<"$out" >"$RES/s3.json"
}

# ================================================================ scenarios 4, 5
# Memory: peak RSS of the proxy and of a Redis 7 intermediate with N
# replicas behind it; new replica: REPLICAOF to loaded, master vs proxy.

# Adds replicas named PREFIX<i> (i from FROM to TO) of PORT; memory-only
# replicas load straight from the socket (no RDB file on disk).
add_replicas() {
  local prefix=$1 from=$2 to=$3 port=$4 i ports=()
  for i in $(seq "$from" "$to"); do
    start_redis "$prefix$i" "replicaof 127.0.0.1 $port" "repl-diskless-load on-empty-db"
    ports+=("${RPORT[$prefix$i]}")
  done
  "$TOOLS/bench_probe" wait-synced --ports "$(IFS=,; echo "${ports[*]}")" --timeout 600 >/dev/null \
    || die "replicas $prefix$from-$to did not sync"
}

# memory_cells LABEL KEYS COUNTS...: proxy then intermediate, stage by stage.
memory_cells() {
  local label=$1 keys=$2
  shift 2
  local side n have pid port cells=()
  for side in proxy intermediate; do
    if [ "$side" = proxy ]; then
      start_proxy s4p "${RPORT[s4m]}"
      wait_until 600 "the s4 proxy's snapshot" proxy_has_snapshot s4p
      pid=${PPID_OF[s4p]}
      port=${PPORT[s4p]}
    else
      start_redis s4i "replicaof 127.0.0.1 ${RPORT[s4m]}" "repl-diskless-sync-delay 0"
      "$TOOLS/bench_probe" wait-synced --ports "${RPORT[s4i]}" --timeout 600 >/dev/null || die "intermediate sync"
      pid=${RPID[s4i]}
      port=${RPORT[s4i]}
    fi
    have=0
    for n in "$@"; do
      reset_peak_rss "$pid"
      add_replicas "s4r-" $((have + 1)) "$n" "$port"
      have=$n
      sleep "$S4_SETTLE"  # steady state under writes
      local hwm rss
      hwm=$(proc_kb "$pid" VmHWM)
      rss=$(proc_kb "$pid" VmRSS)
      log "  $label, $side, $n replicas: peak RSS $((hwm / 1024)) MiB (now $((rss / 1024)) MiB)"
      cells+=("$(jq -n --arg d "$label" --argjson k "$keys" --arg s "$side" --argjson n "$n" \
        --argjson h "$hwm" --argjson r "$rss" \
        '{dataset: $d, keys: $k, side: $s, replicas: $n, peak_rss_kb: $h, rss_kb: $r}')")
    done
    local i
    for i in $(seq "$have"); do stop_redis "s4r-$i"; done
    if [ "$side" = proxy ]; then stop_proxy s4p; else stop_redis s4i; fi
  done
  printf '%s\n' "${cells[@]}" >>"$WORK/s4-cells.jsonl"
}

# new_replica_runs N: time REPLICAOF -> loaded, from the master and from the proxy.
new_replica_runs() {
  local rep via runs=()
  for rep in $(seq "$1"); do
    local direct proxied
    for via in master proxy; do
      local port=${RPORT[s4m]}
      [ "$via" = proxy ] && port=${PPORT[s4p]}
      start_redis s5r
      timeout 120 sync || true
      local out
      out=$("$TOOLS/bench_probe" replicaof --replica "${RPORT[s5r]}" --master-port "$port" --timeout 600) \
        || die "scenario 5: the new replica did not load"
      stop_redis s5r
      if [ "$via" = master ]; then direct=$(jq .seconds <<<"$out"); else proxied=$(jq .seconds <<<"$out"); fi
    done
    log "  new replica, run $rep: from the master ${direct}s, from the proxy ${proxied}s"
    runs+=("$(jq -n --argjson d "$direct" --argjson p "$proxied" '{direct_s: $d, proxy_s: $p}')")
  done
  printf '%s\n' "${runs[@]}" | jq -s . >"$WORK/s5-runs.json"
}

scenario45() {
  local do4=$1 do5=$2 label keys counts
  : >"$WORK/s4-cells.jsonl"
  for label in small large; do
    if [ "$label" = small ]; then keys=$S4_SMALL_KEYS; counts=$S4_SMALL_COUNTS; else keys=$S4_LARGE_KEYS; counts=$S4_LARGE_COUNTS; fi
    [ "$label" = small ] && [ "$do4" = 0 ] && continue
    local mb=$(( keys * VALUE_SIZE / 1000000 ))
    log "scenarios 4/5: dataset of $keys keys x $VALUE_SIZE B (~$mb MB)"
    start_master s4m
    populate "${RPORT[s4m]}" "$keys"
    "$TOOLS/bench_probe" writer --port "${RPORT[s4m]}" --rate 1000 >/dev/null &
    local writer=$!
    PIDS+=("$writer")
    if [ "$label" = large ] && [ "$do5" = 1 ]; then
      start_proxy s4p "${RPORT[s4m]}"
      wait_until 600 "the s5 proxy's snapshot" proxy_has_snapshot s4p
      log "scenario 5: new replica on the ~$mb MB dataset ($S5_REPEATS x)"
      new_replica_runs "$S5_REPEATS"
      stop_proxy s4p
      jq --argjson k "$keys" --argjson v "$VALUE_SIZE" --arg d "~$mb MB" \
        '{dataset: $d, keys: $k, value_bytes: $v, runs: .}' "$WORK/s5-runs.json" >"$RES/s5.json"
    fi
    if [ "$do4" = 1 ]; then
      # shellcheck disable=SC2086
      memory_cells "~$mb MB" "$keys" $counts
    fi
    stop_pid "$writer"
    stop_redis s4m
  done
  if [ "$do4" = 1 ]; then
    jq -s '{cells: .}' "$WORK/s4-cells.jsonl" >"$RES/s4.json"
  fi
}

# ================================================================ scenario 6
scenario6() {
  log "scenario 6: the stream normalizer against memcpy (Google Benchmark)"
  # The table takes paired/* (memcpy and the normalizer timed pass for pass);
  # repeated, interleaved at random, medians: memcpy is bandwidth-bound and
  # moves with whatever else the machine does.
  "$TOOLS/bench_parser" --benchmark_min_time="$S6_MIN_TIME" --benchmark_filter="$S6_FILTER" \
    --benchmark_repetitions="$S6_REPS" --benchmark_enable_random_interleaving=true \
    --benchmark_out="$RES/s6.json" --benchmark_out_format=json >"$WORK/s6.txt" 2>&1 \
    || { cat "$WORK/s6.txt" >&2; die "scenario 6"; }
}

# ================================================================ scenario 7
# A new replica after many writes on a small dataset: the bytes it receives and
# the time until it is loaded, from the master directly, from the proxy
# (snapshots refreshed within the lineage) and from a proxy with
# --snapshot-refresh no (the first snapshot and every byte since).
proxy_refresh_idle() {
  curl -sf "http://127.0.0.1:${PSTATUS[$1]}/status" | jq -e '.refresh.state == "idle" and .refresh.done >= 1' >/dev/null
}
replica_has_last_write() {  # replica_has_last_write PORT
  [ "$(rcli "$1" get s7:last)" = "$S7_LAST" ]
}
scenario7() {
  local mb=$(( S7_KEYS * VALUE_SIZE / 1000000 )) wmb=$(( S7_WRITES * VALUE_SIZE / 1000000 ))
  log "scenario 7: a new replica after $wmb MB of writes on a ~$mb MB dataset"
  start_master s7m
  populate "${RPORT[s7m]}" "$S7_KEYS"
  # Refresh once the log since the snapshot is a fifth of it: a new replica then gets
  # at most about 1.2 x the dataset (the default ratio, 2, trades that for fewer forks).
  start_proxy s7p "${RPORT[s7m]}" --snapshot-refresh-ratio 0.2 --snapshot-min-interval 1 --backlog-size 1mb
  start_proxy s7n "${RPORT[s7m]}" --snapshot-refresh no
  wait_until 600 "the s7 proxies' snapshots" proxy_has_snapshot s7p
  wait_until 600 "the s7 proxies' snapshots" proxy_has_snapshot s7n
  redis-benchmark -h 127.0.0.1 -p "${RPORT[s7m]}" -t set -n "$S7_WRITES" -r "$S7_KEYS" -d "$VALUE_SIZE" -P 16 -q \
    >"$WORK/s7-bench.txt" 2>&1 || die "scenario 7: redis-benchmark"
  S7_LAST="end-$RANDOM$RANDOM"
  rcli "${RPORT[s7m]}" set s7:last "$S7_LAST" >/dev/null
  sleep 2  # the last automatic refresh starts within a second of the log passing the ratio
  wait_until 600 "the s7 proxy's refresh" proxy_refresh_idle s7p
  local via port out secs bytes cells=()
  for via in direct proxy norefresh; do
    case $via in
      direct) port=${RPORT[s7m]} ;;
      proxy) port=${PPORT[s7p]} ;;
      norefresh) port=${PPORT[s7n]} ;;
    esac
    start_redis s7r
    local t0 t1
    t0=$(date +%s%N)
    "$TOOLS/bench_probe" replicaof --replica "${RPORT[s7r]}" --master-port "$port" --timeout 600 >/dev/null \
      || die "scenario 7: the new replica did not load ($via)"
    # Equal: the replica holds the master's last write (the log after the snapshot applied too).
    wait_until 600 "the s7 replica to hold the last write ($via)" replica_has_last_write "${RPORT[s7r]}"
    t1=$(date +%s%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
    bytes=$(rcli "${RPORT[s7r]}" info stats | tr -d '\r' | awk -F: '/^total_net_repl_input_bytes:/ { print $2 }')
    log "  $via: equal to its source after ${secs}s, received $(( bytes / 1000000 )) MB"
    cells+=("$(jq -n --arg v "$via" --argjson s "$secs" --argjson b "$bytes" '{via: $v, seconds: $s, bytes: $b}')")
    stop_redis s7r
  done
  local refreshes
  refreshes=$(curl -sf "http://127.0.0.1:${PSTATUS[s7p]}/status" | jq .refresh.done)
  stop_proxy s7p
  stop_proxy s7n
  stop_redis s7m
  printf '%s\n' "${cells[@]}" | jq -s --arg d "~$mb MB" --argjson w "$wmb" --argjson r "$refreshes" \
    '{dataset: $d, writes_mb: $w, refreshes: $r, runs: .}' >"$RES/s7.json"
}

# ================================================================ run
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
want 6 && scenario6
want 2 && scenario2
want 1 && scenario1
want 3 && scenario3
want 7 && scenario7
if want 4 || want 5; then
  d4=0; d5=0
  want 4 && d4=1
  want 5 && d5=1
  scenario45 "$d4" "$d5"
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ================================================================ report
jq -n --arg stamp "$STAMP" --argjson quick "$QUICK" --arg only "$ONLY" \
  --argjson seconds "$(( $(date +%s) - RUN_START ))" \
  --arg nproc "$(nproc)" --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
  --arg mem "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)" \
  --arg kernel "$(uname -r)" --arg redis "$(redis-server --version | awk '{ print $3 }' | cut -d= -f2)" \
  --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --arg load_before "$LOAD_BEFORE" --arg load_after "$LOAD_AFTER" \
  '{stamp: $stamp, quick: ($quick == 1), only: $only, seconds: $seconds,
    machine: {nproc: ($nproc | tonumber), cpu: $cpu, memory: $mem, kernel: $kernel, redis: $redis,
              loadavg_before: $load_before, loadavg_after: $load_after}, commit: $commit}' >"$RES/meta.json"

python3 "$ROOT/bench/report.py" "$RES" "$RESULTS_DIR/$STAMP.json" >"$WORK/table.md"
cp "$RESULTS_DIR/$STAMP.json" "$RESULTS_DIR/latest.json"
if [ -f "$RES/s3-direct.csv" ] && [ -f "$RES/s3-proxy.csv" ]; then
  for f in s3-direct.csv s3-proxy.csv s3-direct.csv.kills s3-proxy.csv.kills; do
    cp "$RES/$f" "$RESULTS_DIR/$STAMP-$f"
  done
  gnuplot -e "direct='$RES/s3-direct.csv'; proxy='$RES/s3-proxy.csv'; out='$RESULTS_DIR/$STAMP-s3-lag.png'; ttl='Reconnect storm: replica lag ($S3_REPLICAS replicas, every link killed $S3_KILLS times)'" \
    "$ROOT/bench/lag.gp" || log "gnuplot failed"
  cp "$RESULTS_DIR/$STAMP-s3-lag.png" "$RESULTS_DIR/latest-s3-lag.png" 2>/dev/null || true
fi
if [ "$QUICK" = 0 ] && [ -z "$ONLY" ]; then
  python3 "$ROOT/bench/report.py" --readme "$ROOT/bench/README.md" "$RESULTS_DIR/$STAMP.json" "$STAMP-s3-lag.png"
  python3 "$ROOT/bench/report.py" --readme "$ROOT/README.md" "$RESULTS_DIR/$STAMP.json" "$STAMP-s3-lag.png"
fi
echo
cat "$WORK/table.md"
echo
log "done in $(( $(date +%s) - RUN_START )) s; results: bench/results/$STAMP.json (and latest.json)"
