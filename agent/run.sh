#!/usr/bin/env bash
# Builds ebpf-agent and runs it in the foreground on the embedded default config (or on the
# config file given as the first argument), installing the Debian packages the build needs when
# they are missing. Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN; CAP_DAC_READ_SEARCH names
# new cgroups without a walk): it attaches to the root of the cgroup2 mount. Ctrl-C detaches and
# unloads everything it attached.
set -euo pipefail
cd "$(dirname "$0")/.."
source cmake/install-deps.sh
build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target ebpf-agent
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if (($#)); then
  exec $sudo "$build/agent/ebpf-agent" run --config "$1"
fi
exec $sudo "$build/agent/ebpf-agent" run
