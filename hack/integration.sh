#!/usr/bin/env bash
# Runs the integration packages (root; the lab binaries must be built).
#
# test/initcmd is the longest package, and its tests share one lab
# cluster, so they run one after another. It runs here as two shards,
# each a go test process with a lab of its own, beside the other
# packages: that, not more parallelism inside a package, is what keeps
# the wall time down on two cores. A shard's output is printed whole when
# it ends, so that it is not interleaved with the others'.
set -uo pipefail
go=${GO:-go}
read -r -a flags <<<"${TEST_FLAGS:--race -count=1}"
cd "$(dirname "$0")/.."

others=$("$go" list ./test/... | grep -v '/test/initcmd$')
# The init_test.go tests of the init command itself; the second shard
# runs every other test of the package (lifecycle, status, key rotation,
# Services with no class).
first='^TestInit(DryRuns|SetsStrictARP|WithoutTerminal|SkipsRestart|WithoutKubeProxy|RefusesMalformed|NamesMissing|StuckRollout|ReportsMetalLB|NamesNodes)'

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$go" test "${flags[@]}" -timeout 20m -run "$first" ./test/initcmd >"$out/a" 2>&1 &
a=$!
"$go" test "${flags[@]}" -timeout 20m -skip "$first" ./test/initcmd >"$out/b" 2>&1 &
b=$!
# shellcheck disable=SC2086 # one package a word
"$go" test "${flags[@]}" -timeout 20m -p 1 $others
rc=$?
wait "$a"
ra=$?
wait "$b"
rb=$?
echo "--- test/initcmd, shard 1 (init):"
cat "$out/a"
echo "--- test/initcmd, shard 2 (lifecycle):"
cat "$out/b"
exit $((rc | ra | rb))
