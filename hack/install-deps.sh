#!/usr/bin/env bash
# Installs the system tools the integration tests use, when they are missing.
set -euo pipefail

need=()
command -v arping >/dev/null || need+=(iputils-arping)
command -v ip >/dev/null || need+=(iproute2)
command -v ss >/dev/null || need+=(iproute2)
command -v pgrep >/dev/null || need+=(procps)
# The race detector (make test runs with -race) needs cgo.
command -v gcc >/dev/null || need+=(gcc libc6-dev)
# The benchmark drops frames with nftables (the kernel has no netem).
if [ "${1:-}" = bench ]; then
  command -v nft >/dev/null || need+=(nftables)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v kubectl >/dev/null; then
  echo "kubectl is not on PATH; the integration tests drive the plugin through the real kubectl" >&2
  exit 1
fi
