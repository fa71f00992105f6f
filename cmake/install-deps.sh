#!/usr/bin/env bash
# Installs the Debian bookworm packages that building, testing and running need, when missing.
# Sourced by tests/run.sh and agent/run.sh.
packages=(cmake g++ make pkg-config libelf-dev zlib1g-dev linux-libc-dev libgtest-dev
          libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libboost-dev clang-14
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
