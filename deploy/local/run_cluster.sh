#!/usr/bin/env bash
# Starts a pepnet-ps cluster on this machine: N shard servers, the pass coordinator and M
# workers, with a log per process under the run folder. Returns when the workers have
# streamed every pass (or failed); Ctrl-C stops everything. Exits non-zero if any process
# failed, naming it.
#
#   deploy/local/run_cluster.sh --config=configs/demo.pbtxt --pass_root=DIR \
#       [--servers=2] [--workers=2] [--run_dir=run] [--publish_dir=RUN/model] \
#       [--max_passes=0] [--idle_timeout=10] [--threads=1] [--base_every=5]
#       [--prefetch_rows=false]    (the workers pull the next batch's rows during a step)
#       [--memory_limit_bytes=N]   (per shard server; default: half the host's memory shared
#                                   by the servers, 0 = none)
#       [--secret_file=FILE]       (the cluster's secret; default: RUN/secret, made if absent)
#       [--tls | --tls_dir=DIR]    (every connection inside TLS: DIR holds cert.pem, key.pem and
#                                   ca.pem; --tls makes them in RUN/tls if absent)
#       [--partition_bits=5]       (of the servers' table; a small limit needs few)
#       [--data_dir=ROOT]          (durable: see below)
#
# With --data_dir every process keeps its state in a folder under ROOT (ps-I/ for shard
# I, coord/ for the coordinator), and the ports are chosen once and recorded in
# ROOT/ports, so that every process keeps its address across restarts. A process killed
# by a signal is started again with the same flags, and the run goes on from the last
# committed pass; the same command run again after the whole cluster stopped (a crash,
# Ctrl-C) resumes the run, its per-pass lines starting at the first pass it trains.
#
# Every process listens on 127.0.0.1 and proves the cluster's secret to its peers
# (docs/security.md); the shards write exports only into the publish folder.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${PEPNET_BIN:-$HERE/../../build/bin}"
SERVERS=2 WORKERS=2 RUN_DIR=run CONFIG="" PASS_ROOT="" PASSES="" PUBLISH_DIR="" MAX_PASSES=0
IDLE_TIMEOUT=10 THREADS=1 BASE_EVERY=5 MEMORY_LIMIT="" PARTITION_BITS=5 DATA_DIR="" SECRET_FILE=""
TLS_DIR="" PREFETCH_ROWS=false
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
    --prefetch_rows=*) PREFETCH_ROWS="${arg#*=}" ;;
    --base_every=*) BASE_EVERY="${arg#*=}" ;;
    --memory_limit_bytes=*) MEMORY_LIMIT="${arg#*=}" ;;
    --partition_bits=*) PARTITION_BITS="${arg#*=}" ;;
    --data_dir=*) DATA_DIR="${arg#*=}" ;;
    --secret_file=*) SECRET_FILE="${arg#*=}" ;;
    --tls) TLS_DIR="@run" ;;
    --tls_dir=*) TLS_DIR="${arg#*=}" ;;
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
mkdir -p "$RUN_DIR" "$PUBLISH_DIR"
PUBLISH_DIR="$(cd "$PUBLISH_DIR" && pwd)"  # the shards' --export_dir: the same folder
if [ -z "$SECRET_FILE" ]; then
  SECRET_FILE="$RUN_DIR/secret"
  if [ ! -s "$SECRET_FILE" ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$SECRET_FILE.tmp" &&
      mv "$SECRET_FILE.tmp" "$SECRET_FILE") || { echo "run_cluster: cannot write $SECRET_FILE" >&2; exit 1; }
  fi
fi
AUTH=(--secret_file="$SECRET_FILE")
if [ "$TLS_DIR" = "@run" ]; then
  TLS_DIR="$RUN_DIR/tls"
  if [ ! -s "$TLS_DIR/cert.pem" ]; then
    "$BIN/pepnet_ctl" tls_keys --out_dir="$TLS_DIR" > /dev/null || exit 1
  fi
fi
if [ -n "$TLS_DIR" ]; then
  AUTH+=(--tls_cert="$TLS_DIR/cert.pem" --tls_key="$TLS_DIR/key.pem" --tls_ca="$TLS_DIR/ca.pem")
fi
rm -f "$RUN_DIR"/*.port "$RUN_DIR"/*.admin_port

# Ports: free ones for a run in memory; with a data dir, the ones recorded there (chosen
# and recorded the first time).
PORTS=() ADMIN_PORTS=()
if [ -n "$DATA_DIR" ]; then
  mkdir -p "$DATA_DIR"
  if [ ! -s "$DATA_DIR/ports" ]; then
    "$BIN/pepnet_ctl" free_ports --count=$((SERVERS + 1)) > "$DATA_DIR/ports.tmp" &&
      mv "$DATA_DIR/ports.tmp" "$DATA_DIR/ports" || exit 1
  fi
  mapfile -t PORTS < "$DATA_DIR/ports"
  if [ "${#PORTS[@]}" -ne $((SERVERS + 1)) ]; then
    echo "run_cluster: $DATA_DIR/ports records ${#PORTS[@]} ports, for a cluster of $((${#PORTS[@]} - 1)) servers; this one has $SERVERS" >&2
    exit 2
  fi
  # The admin ports are recorded too: one the kernel picked at a restart could be the
  # recorded port of a process that is down at that moment.
  if [ ! -s "$DATA_DIR/admin_ports" ]; then
    "$BIN/pepnet_ctl" free_ports --count=$((2 * SERVERS + 2)) |
      grep -vxF -f "$DATA_DIR/ports" | head -n $((SERVERS + 1)) > "$DATA_DIR/admin_ports.tmp" &&
      mv "$DATA_DIR/admin_ports.tmp" "$DATA_DIR/admin_ports" || exit 1
  fi
  mapfile -t ADMIN_PORTS < "$DATA_DIR/admin_ports"
else
  for _ in $(seq 0 "$SERVERS"); do PORTS+=(0); ADMIN_PORTS+=(0); done
fi

declare -A PID
NAMES=()
stop_all() {
  for name in "${NAMES[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null; done
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

if [ -z "$MEMORY_LIMIT" ]; then
  # The shards of one host share it: each gets its part of half the memory (a shard left
  # to itself would take half of it alone).
  total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  MEMORY_LIMIT=$((total_kb * 1024 / 2 / SERVERS))
fi

start_server() {  # shard index
  local i=$1 store=() limit=()
  [ -n "$DATA_DIR" ] && store=(--data_dir="$DATA_DIR/ps-$i")
  [ -n "$MEMORY_LIMIT" ] && limit=(--memory_limit_bytes="$MEMORY_LIMIT")
  rm -f "$RUN_DIR/ps-$i.port"
  "$BIN/pepnet_ps" --host=127.0.0.1 --table_config="$RUN_DIR/table.pbtxt" --port="${PORTS[$i]}" \
    --port_file="$RUN_DIR/ps-$i.port" --admin_port="${ADMIN_PORTS[$i]}" --admin_port_file="$RUN_DIR/ps-$i.admin_port" \
    --shard_id="$i" --num_shards="$SERVERS" \
    --export_dir="$PUBLISH_DIR" "${AUTH[@]}" "${limit[@]}" "${store[@]}" >> "$RUN_DIR/ps-$i.log" 2>&1 &
  PID["server $i"]=$!
}
for i in $(seq 0 $((SERVERS - 1))); do start_server "$i"; NAMES+=("server $i"); done
SERVER_LIST=""
for i in $(seq 0 $((SERVERS - 1))); do
  # A shard with a data dir loads its table before it listens.
  port=$(wait_port "$RUN_DIR/ps-$i.port" 300) || { echo "run_cluster: server $i did not start; see $RUN_DIR/ps-$i.log" >&2; tail -n 2 "$RUN_DIR/ps-$i.log" >&2; stop_all; exit 1; }
  PORTS[$i]=$port
  SERVER_LIST="${SERVER_LIST:+$SERVER_LIST,}127.0.0.1:$port"
done

start_coordinator() {
  local store=()
  [ -n "$DATA_DIR" ] && store=(--data_dir="$DATA_DIR/coord")
  rm -f "$RUN_DIR/coord.port"
  "$BIN/pepnet_coord" --num_workers="$WORKERS" --servers="$SERVER_LIST" --config="$CONFIG" \
    --publish_dir="$PUBLISH_DIR" --base_every="$BASE_EVERY" --port="${PORTS[$SERVERS]}" \
    --port_file="$RUN_DIR/coord.port" --admin_port="${ADMIN_PORTS[$SERVERS]}" --admin_port_file="$RUN_DIR/coord.admin_port" --metrics_out="$RUN_DIR/metrics.jsonl" "${AUTH[@]}" "${store[@]}" \
    > >(tee -a "$RUN_DIR/coord.out") 2>> "$RUN_DIR/coord.log" &
  PID[coordinator]=$!
}
start_coordinator
NAMES+=("coordinator")
port=$(wait_port "$RUN_DIR/coord.port" 30) || { echo "run_cluster: the coordinator did not start; see $RUN_DIR/coord.log" >&2; tail -n 2 "$RUN_DIR/coord.log" >&2; stop_all; exit 1; }
PORTS[$SERVERS]=$port
echo "run_cluster: servers $SERVER_LIST, coordinator 127.0.0.1:$port, logs in $RUN_DIR${DATA_DIR:+, state in $DATA_DIR}" >&2
echo "run_cluster: admin HTTP (/healthz, /readyz, /statusz, /metrics) of shard 0 on http://127.0.0.1:$(cat "$RUN_DIR/ps-0.admin_port" 2>/dev/null)/; every process's port in $RUN_DIR/*.admin_port" >&2
SOURCE=(--pass_root="$PASS_ROOT")
[ -n "$PASSES" ] && SOURCE=(--passes="$PASSES")
start_worker() {  # worker index
  "$BIN/pepnet_worker" --config="$CONFIG" --servers="$SERVER_LIST" --coordinator="127.0.0.1:$port" \
    --worker_index="$1" --num_workers="$WORKERS" "${SOURCE[@]}" --max_passes="$MAX_PASSES" \
    --idle_timeout_s="$IDLE_TIMEOUT" --threads="$THREADS" --prefetch_rows="$PREFETCH_ROWS" \
    --admin_port_file="$RUN_DIR/worker-$1.admin_port" "${AUTH[@]}" >> "$RUN_DIR/worker-$1.log" 2>&1 &
  PID["worker $1"]=$!
}
for i in $(seq 0 $((WORKERS - 1))); do start_worker "$i"; NAMES+=("worker $i"); done

restart() {  # name
  case "$1" in
    "server "*) start_server "${1#server }" ;;
    coordinator) start_coordinator ;;
    "worker "*) start_worker "${1#worker }" ;;
  esac
}

# Watch every process until the coordinator and the workers are done. With a data dir, a
# process killed by a signal is restarted (what a supervisor such as Kubernetes does).
failed=0
declare -A DONE
while :; do
  running=0
  for name in "${NAMES[@]}"; do
    [ -n "${DONE[$name]:-}" ] && continue
    pid=${PID[$name]}
    if kill -0 "$pid" 2>/dev/null; then
      [[ "$name" == server* ]] || running=1
      continue
    fi
    wait "$pid" 2>/dev/null; rc=$?
    if [ -n "$DATA_DIR" ] && [ "$rc" -gt 128 ]; then
      echo "run_cluster: $name was killed (signal $((rc - 128))); starting it again" >&2
      restart "$name"
      [[ "$name" == server* ]] || running=1
      continue
    fi
    DONE[$name]=$rc
    if [ "$rc" -ne 0 ]; then
      case "$name" in
        coordinator) echo "run_cluster: the coordinator failed (exit $rc):" >&2; tail -n 3 "$RUN_DIR/coord.log" >&2 ;;
        worker*) echo "run_cluster: $name failed (exit $rc): $(tail -n 1 "$RUN_DIR/${name/ /-}.log")" >&2 ;;
        server*) echo "run_cluster: $name exited with $rc; see $RUN_DIR/${name/ /-}.log" >&2 ;;
      esac
      failed=1
    fi
  done
  [ "$running" -eq 1 ] || break
  sleep 0.2
done
for i in $(seq 0 $((SERVERS - 1))); do
  [ -n "${DONE[server $i]:-}" ] || kill -TERM "${PID[server $i]}" 2>/dev/null
done
for i in $(seq 0 $((SERVERS - 1))); do
  [ -n "${DONE[server $i]:-}" ] && continue
  wait "${PID[server $i]}"; rc=$?
  if [ $rc -ne 0 ]; then echo "run_cluster: server $i exited with $rc; see $RUN_DIR/ps-$i.log" >&2; failed=1; fi
done
wait 2>/dev/null  # the coordinator's tee
exit $failed
