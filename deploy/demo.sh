#!/usr/bin/env bash
# The demo: on a fresh Debian 12 machine, installs what is missing, builds, generates 5
# passes of synthetic data, and streams them through a local cluster of 2 shard servers,
# the pass coordinator and 2 workers, every pass committed to their data folders. Prints
# each pass's AUC per task, the table size and the commit, where shard 0's /metrics is
# while the cluster runs, then the run report's path, where the published model is and
# how to score with it: in batch (pepnet_predict) and online (pepnet_serve, which took
# every version as it was published).
#
#   deploy/demo.sh [RUN_DIR]      (default: demo-run)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${1:-$ROOT/demo-run}"
"$ROOT/deploy/install_deps.sh"
"$ROOT/deploy/build.sh" release
BIN="$ROOT/build/bin"
rm -rf "$RUN"
mkdir -p "$RUN"
echo "== generating 5 passes of synthetic data into $RUN/data"
"$BIN/pepnet_datagen" --out_dir="$RUN/data" --passes=5 --files_per_pass=2 --rows_per_file=20000
# Online serving beside the cluster: it waits for the first version, then takes each one
# as it is published.
"$BIN/pepnet_serve" --model_dir="$RUN/model" --port=0 --port_file="$RUN/serve-port.txt" \
  > "$RUN/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null' EXIT
echo "== training: 2 servers + 2 workers (logs in $RUN, durable state in $RUN/state)"
"$ROOT/deploy/local/run_cluster.sh" --config="$ROOT/configs/demo.pbtxt" --pass_root="$RUN/data" \
  --servers=2 --workers=2 --max_passes=5 --run_dir="$RUN" --publish_dir="$RUN/model" --base_every=5 \
  --data_dir="$RUN/state" --memory_limit_bytes=16777216 &
cluster=$!
trap 'kill $cluster $serve 2>/dev/null' INT TERM
# While the cluster runs: where its Prometheus metrics are, and a few of them.
for _ in $(seq 300); do [ -s "$RUN/ps-0.admin_port" ] && break; sleep 0.1; done
if [ -s "$RUN/ps-0.admin_port" ]; then
  metrics="http://127.0.0.1:$(cat "$RUN/ps-0.admin_port")/metrics"
  echo "== shard 0's metrics while it runs: $metrics (every process has one: $RUN/*.admin_port)"
  if command -v curl > /dev/null; then
    sleep 1  # the shards' first figures
    curl -s "$metrics" | grep -E '^pepnet_table_(rows|used_bytes) ' || true
  fi
fi
wait $cluster
trap - INT TERM
echo
"$BIN/pepnet_ctl" report --run_dir="$RUN" --out="$RUN/report.html" > /dev/null
echo "== the run report: $RUN/report.html"
echo "(one self-contained page: AUC and logloss per task and domain, samples/s, table size,"
echo " deletions, commit and publish times; open it in a browser)"
echo
echo "== the published model: $RUN/model (newest version: $(ls "$RUN/model" | tail -n 1))"
echo "Score data with it:"
echo "  $BIN/pepnet_predict --model_dir=$RUN/model --data=$RUN/data/pass-00004/part-00000.csv --out=$RUN/scores.csv"
"$BIN/pepnet_predict" --model_dir="$RUN/model" --data="$RUN/data/pass-00004/part-00000.csv" \
  --out="$RUN/scores.csv"
head -n 4 "$RUN/scores.csv"
echo "(one line per sample: the probability of each task; all in $RUN/scores.csv)"
echo
# One HTTP request over bash's /dev/tcp (no client needed): METHOD PATH [BODY].
http() {
  exec 3<> "/dev/tcp/127.0.0.1/$(cat "$RUN/serve-port.txt")"
  printf '%s %s HTTP/1.1\r\nHost: demo\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    "$1" "$2" "${#3}" "$3" >&3
  sed -n '/^\r$/,$p' <&3 | tail -n +2
  exec 3<&-
}
newest=$(ls "$RUN/model" | tail -n 1)
for _ in $(seq 100); do grep -q "serving version ${newest#v-0*}" "$RUN/serve.log" && break; sleep 0.1; done
echo "== online serving: pepnet_serve on port $(cat "$RUN/serve-port.txt") took $(grep -c 'serving version' "$RUN/serve.log") versions as they were published (log: $RUN/serve.log)"
echo "GET /v1/model:"
http GET /v1/model ""
body='{"samples": [{"domain": 1, "user": "u3466", "item": "i1338", "author": "a96", "history": ["i9223", "i379"], "topic": "t6", "hour": 13, "age": 20}, {"domain": 0, "user": "u17", "item": "i42", "hour": "9"}]}'
echo "POST /v1/score $body:"
http POST /v1/score "$body"
