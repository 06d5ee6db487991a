#!/usr/bin/env bash
# Installs the plugin from dist/ the way users do, through the real krew and
# kubectl, in a throwaway KREW_ROOT, and checks that kubectl dispatches to it.
set -euo pipefail
version=${1:?usage: krew-test.sh VERSION}
root=$(cd "$(dirname "$0")/.." && pwd)
krew_bin=$root/.cache/krew
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$krew_bin/validate-krew-manifest" -manifest "$root/dist/porter.yaml" -skip-install

export KREW_ROOT=$work/krew HOME=$work
mkdir -p "$work/bin"
cp "$krew_bin/krew" "$work/bin/kubectl-krew"
export PATH=$KREW_ROOT/bin:$work/bin:$PATH

archive=$root/dist/kubectl-porter_${version}_linux_amd64.tar.gz
kubectl krew install --manifest="$root/dist/porter.yaml" --archive="$archive"
out=$(kubectl porter version --client)
echo "$out"
case $out in
  *"$version"*) echo "krew install: ok" ;;
  *) echo "kubectl porter version printed no $version" >&2; exit 1 ;;
esac
