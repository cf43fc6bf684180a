#!/usr/bin/env bash
# Configures and builds one flavour of pepnet-ps.
#   deploy/build.sh [release|asan|tsan|fuzz]   -> build/, build-asan/, build-tsan/,
#                                                  build-fuzz/
# fuzz: the libFuzzer targets of tests/fuzz only, with clang-14 (the others use GCC).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
# The sanitizer and fuzz trees keep line tables only (-g1): their reports still name file
# and line, and the builds, most of the test command's time, are a fifth faster than with
# full debug info.
lines_only="-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
case "$flavour" in
  release) dir=build; extra=() ;;
  asan) dir=build-asan; extra=(-DPEPNET_SANITIZE=address -DCMAKE_BUILD_TYPE=RelWithDebInfo "$lines_only") ;;
  tsan) dir=build-tsan; extra=(-DPEPNET_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo "$lines_only") ;;
  fuzz)
    export CC=clang-14 CXX=clang++-14
    dir=build-fuzz
    extra=(-DPEPNET_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo "$lines_only") ;;
  *) echo "build.sh: unknown flavour '$flavour' (release, asan, tsan or fuzz)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release ${PEPNET_CMAKE_FLAGS:-} "${extra[@]}" >/dev/null
cmake --build "$dir" -j "${JOBS:-2}"
