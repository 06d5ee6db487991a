#!/usr/bin/env bash
# Fails when a test run left lab network namespaces, lab processes, listening
# control-plane ports or sandbox directories behind.
set -uo pipefail

state_root=${PORTER_LAB_STATE:-/run/porter-lab}
bad=0

ns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^plab-' || true)
if [ -n "$ns" ]; then
  echo "leftover network namespaces:"; echo "$ns" | sed 's/^/  /'; bad=1
fi

procs=$(pgrep -a -f "$state_root/" || true)
if [ -n "$procs" ]; then
  echo "leftover processes:"; echo "$procs" | sed 's/^/  /'; bad=1
fi

ports=$(ss -Hltnp 2>/dev/null | grep -E '"(kube-apiserver|kube-controller|kube-scheduler|etcd|kwok)"' || true)
if [ -n "$ports" ]; then
  echo "leftover listening ports:"; echo "$ports" | sed 's/^/  /'; bad=1
fi

if [ -d "$state_root" ] && [ -n "$(ls -A "$state_root")" ]; then
  echo "leftover sandbox directories in $state_root:"; ls -A "$state_root" | sed 's/^/  /'; bad=1
fi

if [ $bad -ne 0 ]; then
  exit 1
fi
echo "no lab namespaces, processes, ports or directories left behind"
