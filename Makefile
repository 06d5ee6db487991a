# Porter's build, lint and test entry points. `make help` lists them.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO      ?= go
PKG     := github.com/porterlb/porter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
# The commit date, not the clock, so that a rebuild of one commit is identical.
BUILD_DATE ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS := -s -w \
	-X $(PKG)/pkg/version.gitVersion=$(VERSION) \
	-X $(PKG)/pkg/version.gitCommit=$(COMMIT) \
	-X $(PKG)/pkg/version.buildDate=$(BUILD_DATE)

# The lab cluster's binaries. They live outside version control and are
# rebuilt only when the pinned versions change.
LAB_BIN      ?= $(CURDIR)/.cache/lab/bin
KWOK_VERSION := $(shell cat hack/tools/kwok.version)
K8S_VERSION  := $(shell awk '$$1 == "k8s.io/kubernetes" { print $$2 }' hack/tools/go.mod)
# What Kubernetes' own build stamps, so the lab reports its real version.
K8S_LDFLAGS  := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitTreeState=clean \
	-X $(p).gitMajor=$(patsubst v%,%,$(word 1,$(subst ., ,$(K8S_VERSION)))) \
	-X $(p).gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION))))
# The binaries are rebuilt when this recipe changes, not on every Makefile edit.
LAB_RECIPE   := $(LAB_BIN)/.recipe
LAB_RECIPE_TEXT := $(K8S_VERSION) kwok-$(KWOK_VERSION) $(strip $(K8S_LDFLAGS))
_ := $(shell mkdir -p $(LAB_BIN) && { [ "$$(cat $(LAB_RECIPE) 2>/dev/null)" = "$(LAB_RECIPE_TEXT)" ] || echo "$(LAB_RECIPE_TEXT)" > $(LAB_RECIPE); })
LAB_KUBE     := kube-apiserver kube-controller-manager kube-scheduler
LAB_TOOLS    := $(addprefix $(LAB_BIN)/,$(LAB_KUBE) etcd kwok kwokctl)
export PORTER_LAB_BIN := $(LAB_BIN)

UNIT_PKGS        = $(shell $(GO) list ./... | grep -v '^$(PKG)/test/')
TEST_FLAGS      ?= -race -count=1
# A count, not a duration: a timed run can end with "context deadline
# exceeded" when time runs out while a worker minimizes a new input.
FUZZTIME        ?= 1000000x
# The pruner checks each input against encoding/json: fewer runs take as long.
PRUNE_FUZZTIME  ?= 150000x

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/kubectl-porter, bin/porter-speaker and bin/porter-controller (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/kubectl-porter ./cmd/porter-speaker ./cmd/porter-controller

.PHONY: generate
generate: ## Regenerate deepcopy code and CRD YAML (controller-gen)
	hack/generate.sh

.PHONY: fuzz
fuzz: ## Fuzz the address parser and the JSON pruner briefly (FUZZTIME, PRUNE_FUZZTIME: about 20 s each)
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./pkg/addr
	$(GO) test -run '^$$' -fuzz FuzzNull -fuzztime $(PRUNE_FUZZTIME) ./pkg/jsonprune

.PHONY: lint
lint: ## Run golangci-lint
	$(GO) tool -modfile=hack/lint/go.mod golangci-lint run ./...

.PHONY: fmt-check
fmt-check: ## Fail when a Go file is not gofmt-clean
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every package
	$(GO) vet ./...

.PHONY: unit
unit: ## Unit tests (no cluster, no root)
	$(GO) test $(TEST_FLAGS) $(UNIT_PKGS)

.PHONY: integration
integration: deps lab ## Tests against the lab cluster and the network lab (root)
	GO='$(GO)' TEST_FLAGS='$(TEST_FLAGS)' hack/integration.sh
	hack/check-leftovers.sh

REPEAT ?= 3

.PHONY: test-repeat
test-repeat: deps lab ## Run the integration packages REPEAT times (default 3) on this machine, stopping at the first failure (root)
	@for i in $$(seq 1 $(REPEAT)); do \
	  echo "=== test-repeat: run $$i of $(REPEAT)"; \
	  start=$$(date +%s); \
	  GO='$(GO)' TEST_FLAGS='$(TEST_FLAGS)' hack/integration.sh || { echo "=== test-repeat: run $$i of $(REPEAT) FAILED"; exit 1; }; \
	  hack/check-leftovers.sh || { echo "=== test-repeat: run $$i of $(REPEAT) left things behind"; exit 1; }; \
	  echo "=== test-repeat: run $$i of $(REPEAT) passed in $$(( $$(date +%s) - start )) s"; \
	done

.PHONY: test
test: fmt-check vet lint unit fuzz image-test integration krew-test ## Everything CI runs

.PHONY: demo
demo: deps lab ## From nothing to a LoadBalancer IP and a live failover, on this machine (root; DEMO_KEEP=1 keeps the lab)
	$(GO) run ./hack/demo

.PHONY: bench
bench: bench-deps lab metallb ## Measure ARP latency, failover and scale against their targets into bench/results.json and docs/benchmarks.md (root; not part of test)
	$(GO) run ./bench $(BENCH_FLAGS)

.PHONY: deps
deps: ## Install the system packages the tests need
	hack/install-deps.sh

.PHONY: bench-deps
bench-deps: ## Install the system packages the tests and the benchmark need
	hack/install-deps.sh bench

.PHONY: lab
lab: $(LAB_TOOLS) ## Build the lab cluster's binaries (only what is missing)

$(addprefix $(LAB_BIN)/,$(LAB_KUBE)): $(LAB_BIN)/%: hack/tools/go.mod hack/tools/go.sum $(LAB_RECIPE)
	@echo "building $* for the lab cluster"
	cd hack/tools && $(GO) build -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/$*

$(LAB_BIN)/etcd: hack/tools/go.mod hack/tools/go.sum $(LAB_RECIPE)
	@echo "building etcd for the lab cluster"
	cd hack/tools && $(GO) build -o $@ go.etcd.io/etcd/server/v3

$(LAB_BIN)/kwok $(LAB_BIN)/kwokctl: hack/tools/kwok.version $(LAB_RECIPE)
	@echo "building $(notdir $@) $(KWOK_VERSION) for the lab cluster"
	GOBIN=$(LAB_BIN) $(GO) install sigs.k8s.io/kwok/cmd/$(notdir $@)@$(KWOK_VERSION)
	@touch $@

# MetalLB, for the benchmark only, from a tools module of its own.
METALLB_DIR := $(CURDIR)/.cache/metallb
METALLB_BIN := $(METALLB_DIR)/bin
export PORTER_METALLB_BIN := $(METALLB_BIN)

.PHONY: metallb
metallb: $(METALLB_BIN)/speaker $(METALLB_BIN)/controller ## Build MetalLB's speaker and controller for the benchmark (only what is missing)

$(METALLB_DIR)/frr-k8s/go.mod: hack/metallb/frr-k8s.sh
	hack/metallb/frr-k8s.sh $(METALLB_DIR)/frr-k8s

$(METALLB_BIN)/speaker $(METALLB_BIN)/controller: $(METALLB_BIN)/%: hack/metallb/go.mod hack/metallb/go.sum $(METALLB_DIR)/frr-k8s/go.mod
	@echo "building MetalLB's $* for the benchmark"
	cd hack/metallb && $(GO) build -o $@ go.universe.tf/metallb/$*

.PHONY: clean
clean: ## Remove build output (keeps the lab cache)
	rm -rf bin dist

DIST_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
# krew wants a semantic version; an untagged commit becomes v0.0.0-<commit>.
DIST_VERSION   := $(if $(filter v%,$(VERSION)),$(VERSION),v0.0.0-$(VERSION))
DIST_LDFLAGS   := $(subst gitVersion=$(VERSION),gitVersion=$(DIST_VERSION),$(LDFLAGS))
KREW_BIN       := $(CURDIR)/.cache/krew

.PHONY: dist
dist: ## Cross-compile the release archives and render the krew manifest into dist/ (VERSION=vX.Y.Z)
	rm -rf dist && mkdir -p dist/build
	for p in $(DIST_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ "$$os" = windows ] && ext=.exe; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(DIST_LDFLAGS)' -o dist/build/$$os-$$arch/kubectl-porter$$ext ./cmd/kubectl-porter; \
	done
	$(GO) run ./hack/dist -version $(DIST_VERSION) -in dist/build -out dist $(if $(BUILD_DATE),-mtime $(BUILD_DATE))

$(KREW_BIN)/krew $(KREW_BIN)/validate-krew-manifest: hack/krew/go.mod
	$(GO) build -modfile=hack/krew/go.mod -o $(KREW_BIN)/ sigs.k8s.io/krew/cmd/krew sigs.k8s.io/krew/cmd/validate-krew-manifest

.PHONY: krew-test
krew-test: dist $(KREW_BIN)/krew $(KREW_BIN)/validate-krew-manifest ## Install dist/ through the real krew and kubectl
	hack/krew-test.sh $(DIST_VERSION)

.PHONY: index
index: dist ## Refresh plugins/porter.yaml, the custom krew index entry, for a release (VERSION=vX.Y.Z)
	mkdir -p plugins && cp dist/porter.yaml plugins/porter.yaml

.PHONY: image
image: ## Build the OCI image tarball (speaker and controller) dist/porter-speaker-$(VERSION).tar (amd64+arm64), no Docker needed
	mkdir -p dist/build
	for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/build/linux-$$arch/ ./cmd/porter-speaker ./cmd/porter-controller; \
	done
	cd hack/image && $(GO) run . -bin-dir $(CURDIR)/dist/build -version $(VERSION) -revision $(COMMIT) \
	  $(if $(BUILD_DATE),-created $(BUILD_DATE)) -out $(CURDIR)/dist/porter-speaker-$(VERSION).tar

.PHONY: image-test
image-test: ## Build the image from the real speaker and read it back
	cd hack/image && $(GO) test -count=1 ./...
