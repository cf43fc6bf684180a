#!/usr/bin/env bash
# The demo: on a fresh Debian 12 machine, installs what is missing, builds, generates 5
# passes of synthetic data, and streams them through a local cluster of 2 shard servers,
# the pass coordinator and 2 workers, every pass committed to their data folders. Prints
# each pass's AUC per task, the table size and the commit, then where the published model
# is and how to score with it.
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
echo "== training: 2 servers + 2 workers (logs in $RUN, durable state in $RUN/state)"
"$ROOT/deploy/local/run_cluster.sh" --config="$ROOT/configs/demo.pbtxt" --pass_root="$RUN/data" \
  --servers=2 --workers=2 --max_passes=5 --run_dir="$RUN" --publish_dir="$RUN/model" --base_every=5 \
  --data_dir="$RUN/state"
echo
echo "== the published model: $RUN/model (newest version: $(ls "$RUN/model" | tail -n 1))"
echo "Score data with it:"
echo "  $BIN/pepnet_predict --model_dir=$RUN/model --data=$RUN/data/pass-00004/part-00000.csv --out=$RUN/scores.csv"
"$BIN/pepnet_predict" --model_dir="$RUN/model" --data="$RUN/data/pass-00004/part-00000.csv" \
  --out="$RUN/scores.csv"
head -n 4 "$RUN/scores.csv"
echo "(one line per sample: the probability of each task; all in $RUN/scores.csv)"
