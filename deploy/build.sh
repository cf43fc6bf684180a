#!/usr/bin/env bash
# Configures and builds one flavour of pepnet-ps.
#   deploy/build.sh [release|asan|tsan]   -> build/, build-asan/, build-tsan/
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
case "$flavour" in
  release) dir=build; extra=() ;;
  asan) dir=build-asan; extra=(-DPEPNET_SANITIZE=address -DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  tsan) dir=build-tsan; extra=(-DPEPNET_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  *) echo "build.sh: unknown flavour '$flavour' (release, asan or tsan)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release ${PEPNET_CMAKE_FLAGS:-} "${extra[@]}" >/dev/null
cmake --build "$dir" -j "${JOBS:-2}"
