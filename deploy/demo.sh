#!/usr/bin/env bash
# The embedded demo: a local SYNC-only master (Redis 7 with PSYNC renamed
# away, as a 2.6 master behaves), psync-proxy in front of it, one Redis 7
# replica attached to the proxy, a few writes in several dbs. Prints the
# status URL and what the replica holds, then runs until Ctrl-C
# (DEMO_SECONDS=N: stop after N seconds). Extra flags go to psync-proxy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/psync-proxy"
MASTER_PORT=${DEMO_MASTER_PORT:-16379}
PROXY_PORT=${DEMO_PROXY_PORT:-6380}
STATUS_PORT=${DEMO_STATUS_PORT:-8380}
REPLICA_PORT=${DEMO_REPLICA_PORT:-16380}
WORK=$(mktemp -d /tmp/psync-demo.XXXXXX)
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

cli() { redis-cli -h 127.0.0.1 "$@"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "demo: timed out waiting for $what; logs in $WORK" >&2
      tail -n 20 "$WORK"/*.log >&2 || true
      trap - EXIT
      exit 1
    fi
    sleep 0.2
  done
}

mkdir -p "$WORK/master" "$WORK/replica" "$WORK/proxy"
cat > "$WORK/master/redis.conf" <<CONF
port $MASTER_PORT
bind 127.0.0.1
dir $WORK/master
save ""
appendonly no
# Behave like a Redis 2.6 master: SYNC only.
rename-command PSYNC ""
repl-diskless-sync no
CONF
redis-server "$WORK/master/redis.conf" >"$WORK/master.log" 2>&1 &
PIDS+=($!)
wait_for 10 "the master" cli -p "$MASTER_PORT" ping

echo "==> writing to the SYNC-only master on port $MASTER_PORT (dbs 0, 1 and 5)"
cli -p "$MASTER_PORT" -n 0 set greeting "hello from the old master" >/dev/null
cli -p "$MASTER_PORT" -n 0 rpush queue job1 job2 job3 >/dev/null
cli -p "$MASTER_PORT" -n 1 hset user:1 name Ada lang C >/dev/null
cli -p "$MASTER_PORT" -n 5 zadd scores 10 alice 20 bob >/dev/null
cli -p "$MASTER_PORT" -n 5 set session abc EX 3600 >/dev/null

"$BIN" --upstream "127.0.0.1:$MASTER_PORT" --port "$PROXY_PORT" --status-port "$STATUS_PORT" \
  --dir "$WORK/proxy" "$@" 2>"$WORK/proxy.log" &
PIDS+=($!)
wait_for 10 "the proxy" curl -sf "http://127.0.0.1:$STATUS_PORT/status"

redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --dir "$WORK/replica" --save "" \
  --replicaof 127.0.0.1 "$PROXY_PORT" >"$WORK/replica.log" 2>&1 &
PIDS+=($!)
wait_for 30 "the replica to sync" sh -c \
  "redis-cli -p $REPLICA_PORT info replication | grep -q master_link_status:up"

echo "==> more writes after the replica attached"
cli -p "$MASTER_PORT" -n 0 incrby counter 42 >/dev/null
cli -p "$MASTER_PORT" -n 1 sadd tags legacy modern >/dev/null
cli -p "$MASTER_PORT" -n 5 zincrby scores 5 alice >/dev/null
wait_for 10 "the writes to reach the replica" sh -c \
  "[ \"\$(redis-cli -p $REPLICA_PORT -n 1 scard tags)\" = 2 ]"

echo
echo "psync-proxy is replicating 127.0.0.1:$MASTER_PORT and serving replicas on 127.0.0.1:$PROXY_PORT"
echo "status: http://127.0.0.1:$STATUS_PORT/status"
echo
echo "The Redis 7 replica on port $REPLICA_PORT holds:"
for db in 0 1 5; do
  echo "  db $db:"
  cli -p "$REPLICA_PORT" -n "$db" --scan | sort | while read -r key; do
    type=$(cli -p "$REPLICA_PORT" -n "$db" type "$key")
    case "$type" in
      string) val=$(cli -p "$REPLICA_PORT" -n "$db" get "$key") ;;
      list) val=$(cli -p "$REPLICA_PORT" -n "$db" lrange "$key" 0 -1 | paste -sd, -) ;;
      hash) val=$(cli -p "$REPLICA_PORT" -n "$db" hgetall "$key" | paste -sd, -) ;;
      set) val=$(cli -p "$REPLICA_PORT" -n "$db" smembers "$key" | sort | paste -sd, -) ;;
      zset) val=$(cli -p "$REPLICA_PORT" -n "$db" zrange "$key" 0 -1 withscores | paste -sd, -) ;;
      *) val="?" ;;
    esac
    ttl=$(cli -p "$REPLICA_PORT" -n "$db" ttl "$key")
    [ "$ttl" -gt 0 ] && val="$val (ttl ${ttl}s)"
    printf '    %-10s %-6s %s\n' "$key" "$type" "$val"
  done
done
echo
echo "The proxy's status (http://127.0.0.1:$STATUS_PORT/status):"
curl -s "http://127.0.0.1:$STATUS_PORT/status"
echo
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  echo "Running; try: redis-cli -p $REPLICA_PORT -n 0 get greeting; Ctrl-C stops everything."
  while true; do sleep 3600; done
fi
