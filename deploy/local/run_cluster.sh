#!/usr/bin/env bash
# Starts a pepnet-ps cluster on this machine: N shard servers, the pass coordinator and M
# workers, on free ports, with a log per process under the run folder. Returns when the
# workers have streamed every pass (or failed); Ctrl-C stops everything. Exits non-zero if
# any process failed, naming it.
#
#   deploy/local/run_cluster.sh --config=configs/demo.pbtxt --pass_root=DIR \
#       [--servers=2] [--workers=2] [--run_dir=run] [--publish_dir=RUN/model] \
#       [--max_passes=0] [--idle_timeout=10] [--threads=1] [--base_every=5]
#       [--memory_limit_bytes=0]   (per shard server; 0 = no limit)
#       [--partition_bits=5]       (of the servers' table; a small limit needs few)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${PEPNET_BIN:-$HERE/../../build/bin}"
SERVERS=2 WORKERS=2 RUN_DIR=run CONFIG="" PASS_ROOT="" PASSES="" PUBLISH_DIR="" MAX_PASSES=0
IDLE_TIMEOUT=10 THREADS=1 BASE_EVERY=5 MEMORY_LIMIT=0 PARTITION_BITS=5
for arg in "$@"; do
  case "$arg" in
    --servers=*) SERVERS="${arg#*=}" ;;
    --workers=*) WORKERS="${arg#*=}" ;;
    --run_dir=*) RUN_DIR="${arg#*=}" ;;
    --config=*) CONFIG="${arg#*=}" ;;
    --pass_root=*) PASS_ROOT="${arg#*=}" ;;
    --passes=*) PASSES="${arg#*=}" ;;
    --publish_dir=*) PUBLISH_DIR="${arg#*=}" ;;
    --max_passes=*) MAX_PASSES="${arg#*=}" ;;
    --idle_timeout=*) IDLE_TIMEOUT="${arg#*=}" ;;
    --threads=*) THREADS="${arg#*=}" ;;
    --base_every=*) BASE_EVERY="${arg#*=}" ;;
    --memory_limit_bytes=*) MEMORY_LIMIT="${arg#*=}" ;;
    --partition_bits=*) PARTITION_BITS="${arg#*=}" ;;
    *) echo "run_cluster: unknown argument $arg" >&2; exit 2 ;;
  esac
done
if [ -z "$CONFIG" ] || { [ -z "$PASS_ROOT" ] && [ -z "$PASSES" ]; }; then
  echo "run_cluster: --config and one of --pass_root/--passes are required" >&2
  exit 2
fi
for b in pepnet_ps pepnet_coord pepnet_worker pepnet_ctl; do
  [ -x "$BIN/$b" ] || { echo "run_cluster: $BIN/$b is missing; build first (deploy/build.sh)" >&2; exit 2; }
done
[ -n "$PUBLISH_DIR" ] || PUBLISH_DIR="$RUN_DIR/model"
mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR"/*.port

PIDS=()
NAMES=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap 'echo "run_cluster: interrupted; stopping every process" >&2; stop_all; exit 130' INT TERM

wait_port() {  # file, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    [ -s "$1" ] && { cat "$1"; return 0; }
    sleep 0.1
  done
  return 1
}

"$BIN/pepnet_ctl" table_config --model_config="$CONFIG" --partition_bits="$PARTITION_BITS" \
  > "$RUN_DIR/table.pbtxt" || exit 1
SERVER_LIST=""
for i in $(seq 0 $((SERVERS - 1))); do
  "$BIN/pepnet_ps" --table_config="$RUN_DIR/table.pbtxt" --port=0 --port_file="$RUN_DIR/ps-$i.port" \
    --shard_id="$i" --num_shards="$SERVERS" --memory_limit_bytes="$MEMORY_LIMIT" \
    > "$RUN_DIR/ps-$i.log" 2>&1 &
  PIDS+=($!); NAMES+=("server $i")
done
for i in $(seq 0 $((SERVERS - 1))); do
  port=$(wait_port "$RUN_DIR/ps-$i.port" 30) || { echo "run_cluster: server $i did not start; see $RUN_DIR/ps-$i.log" >&2; stop_all; exit 1; }
  SERVER_LIST="${SERVER_LIST:+$SERVER_LIST,}127.0.0.1:$port"
done
"$BIN/pepnet_coord" --num_workers="$WORKERS" --servers="$SERVER_LIST" --config="$CONFIG" \
  --publish_dir="$PUBLISH_DIR" --base_every="$BASE_EVERY" --port=0 --port_file="$RUN_DIR/coord.port" \
  --metrics_out="$RUN_DIR/metrics.jsonl" 2> "$RUN_DIR/coord.log" | tee "$RUN_DIR/coord.out" &
COORD=$!
PIDS+=($COORD); NAMES+=("coordinator")
port=$(wait_port "$RUN_DIR/coord.port" 30) || { echo "run_cluster: the coordinator did not start; see $RUN_DIR/coord.log" >&2; stop_all; exit 1; }
echo "run_cluster: servers $SERVER_LIST, coordinator 127.0.0.1:$port, logs in $RUN_DIR" >&2
SOURCE=(--pass_root="$PASS_ROOT")
[ -n "$PASSES" ] && SOURCE=(--passes="$PASSES")
WORKER_PIDS=()
for i in $(seq 0 $((WORKERS - 1))); do
  "$BIN/pepnet_worker" --config="$CONFIG" --servers="$SERVER_LIST" --coordinator="127.0.0.1:$port" \
    --worker_index="$i" --num_workers="$WORKERS" "${SOURCE[@]}" --max_passes="$MAX_PASSES" \
    --idle_timeout_s="$IDLE_TIMEOUT" --threads="$THREADS" > "$RUN_DIR/worker-$i.log" 2>&1 &
  WORKER_PIDS+=($!); PIDS+=($!); NAMES+=("worker $i")
done

failed=0
wait "$COORD"; rc=$?
if [ $rc -ne 0 ]; then
  echo "run_cluster: the coordinator failed (exit $rc):" >&2
  tail -n 3 "$RUN_DIR/coord.log" >&2
  failed=1
fi
for i in "${!WORKER_PIDS[@]}"; do
  wait "${WORKER_PIDS[$i]}"; rc=$?
  if [ $rc -ne 0 ]; then
    echo "run_cluster: worker $i failed (exit $rc): $(tail -n 1 "$RUN_DIR/worker-$i.log")" >&2
    failed=1
  fi
done
for i in $(seq 0 $((SERVERS - 1))); do kill -TERM "${PIDS[$i]}" 2>/dev/null; done
for i in $(seq 0 $((SERVERS - 1))); do
  wait "${PIDS[$i]}"; rc=$?
  if [ $rc -ne 0 ]; then echo "run_cluster: server $i exited with $rc; see $RUN_DIR/ps-$i.log" >&2; failed=1; fi
done
exit $failed
