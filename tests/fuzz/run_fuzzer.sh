#!/usr/bin/env bash
# One bounded fuzzing run, as the fuzz_* tests do it (docs/fuzzing.md):
#   run_fuzzer.sh FUZZER SEED_CORPUS SECONDS [ARTIFACT_DIR]
# The fuzzer runs SECONDS on a copy of the seed corpus in a temporary folder, so the
# repository is never written. It exits non-zero when the fuzzer found a crash, a leak,
# a timeout or an out-of-memory input; the input is kept in ARTIFACT_DIR (default: the
# current folder) as crash-*, leak-*, timeout-* or oom-*, and the last lines of the
# fuzzer's output show where.
set -euo pipefail
fuzzer=$(realpath "$1")
seeds=$(realpath "$2")
seconds=$3
artifacts=${4:-$PWD}
name=$(basename "$fuzzer")
mkdir -p "$artifacts"
artifacts=$(realpath "$artifacts")
work=$(mktemp -d "${TMPDIR:-/tmp}/${name}.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp -r "$seeds"/. "$work/corpus/"
# -timeout: one input may take at most 10 s; -rss_limit_mb: the process at most 2 GiB
# (and so any single allocation); -max_len: inputs up to 64 KiB.
set +e
(cd "$work" && TMPDIR="$work" "$fuzzer" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$artifacts/$name-" corpus >"$work/log" 2>&1)
rc=$?
set -e
grep -E '^(stat::|#[0-9]+[[:space:]]+DONE)' "$work/log" || true
echo "corpus: $(ls "$work/corpus" | wc -l) inputs"
if [ $rc -ne 0 ]; then
  tail -n 60 "$work/log"
  echo "$name: the fuzzer failed (exit $rc); the input is in $artifacts/$name-*" >&2
fi
exit $rc
