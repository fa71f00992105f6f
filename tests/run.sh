#!/usr/bin/env bash
# Builds the library and runs every test (unit, kernel, package) on a Debian bookworm machine,
# installing the Debian packages the build and tests need when they are missing.
# Kernel tests need root and BPF; they create and remove their own cgroups and bpffs mounts.
set -euo pipefail
cd "$(dirname "$0")/.."

source cmake/install-deps.sh

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
