#!/usr/bin/env bash
# Installs the Debian 12 packages pepnet-ps builds with, skipping what is present.
set -euo pipefail
PACKAGES=(cmake make g++ libboost-dev libprotobuf-dev protobuf-compiler librocksdb-dev
          libeigen3-dev libgflags-dev libgoogle-glog-dev libgtest-dev libbenchmark-dev
          zlib1g-dev libssl-dev
          nlohmann-json3-dev libdnnl-dev
          libgloo-dev  # only pepnet_bench_dense_sync's baseline, Gloo's allreduce
          clang-14 libclang-rt-14-dev)  # the fuzz flavour: clang++-14 and libFuzzer
# --test: also what only the tests run: promtool checks /metrics, headless Chromium renders
# the run report, kubectl renders the Kubernetes manifests.
if [ "${1:-}" = "--test" ]; then
  PACKAGES+=(prometheus chromium)
  # A newer kubectl already installed (another package owns the binary) is kept.
  command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
