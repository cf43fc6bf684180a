#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite: the release build,
# then the same tests under ASan+UBSan and under TSan, then a bounded run of every
# libFuzzer target (clang; tests/fuzz, docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install_deps.sh --test
for flavour in release asan tsan fuzz; do
  echo "=== $flavour: build"
  start=$SECONDS
  deploy/build.sh "$flavour"
  echo "=== $flavour: built in $((SECONDS - start)) s"
  dir=build; [ "$flavour" = release ] || dir="build-$flavour"
  echo "=== $flavour: test"
  (cd "$dir" && ctest --output-on-failure -j2)
done
echo "=== all test suites passed"
