#!/usr/bin/env bash
# Generates the APIs' deepcopy code (beside the types) and CRD YAML (in
# manifests/crd) with controller-gen.
set -euo pipefail
cd "$(dirname "$0")/.."
go tool -modfile=hack/codegen/go.mod controller-gen \
  object paths=./pkg/apis/... \
  crd:crdVersions=v1 output:crd:dir=manifests/crd
