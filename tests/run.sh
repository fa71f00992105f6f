#!/usr/bin/env bash
# Builds the library and runs every test (unit, kernel, package) on a Debian bookworm machine,
# installing the Debian packages the build and tests need when they are missing.
# Kernel tests need root and BPF; they create and remove their own cgroups and bpffs mounts.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make pkg-config libelf-dev zlib1g-dev linux-libc-dev libgtest-dev
          libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libboost-dev libzstd-dev clang-14
          libbenchmark-dev libbpf-dev bpftool iproute2 python3 python3-yaml)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure

# The same tests again under AddressSanitizer and UndefinedBehaviorSanitizer, in a build of
# their own (no benchmarks; the package tests install and build on their own and are skipped).
asan="${ASAN_BUILD_DIR:-build-asan}"
cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEBPF_SANITIZE=ON -DEBPF_BUILD_BENCH=OFF
cmake --build "$asan" -j"$(nproc)"
UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir "$asan" --output-on-failure -E '^package\.'
