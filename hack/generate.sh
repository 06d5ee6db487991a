#!/usr/bin/env bash
# Generates the API's deepcopy code and CRD YAML with controller-gen.
# Usage: hack/generate.sh [DEEPCOPY_DIR CRD_DIR]
# With no arguments it writes them in place; the staleness test passes
# temporary directories and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
obj=${1:-pkg/apis/network/v1alpha2}
crd=${2:-manifests/crd}
go tool -modfile=hack/codegen/go.mod controller-gen \
  object paths=./pkg/apis/... output:object:dir="$obj" \
  crd:crdVersions=v1 output:crd:dir="$crd"
