# strictgate — make help lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
export STRICTGATE_CACHE ?= $(HOME)/.cache/strictgate
export CGO_ENABLED ?= 0
# Tests that need a real kube-apiserver, eBPF or a cluster take minutes on first run
# (building the control plane); later runs reuse $(STRICTGATE_CACHE).
TEST_TIMEOUT ?= 45m
FUZZTIME ?= 10s

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Regenerate committed code (bpf2go objects, embedded manifests).
	$(GO) generate ./...

.PHONY: generate-check
generate-check: ## Fail if `make generate` changes anything (generated code must match its sources).
	@before=$$(git status --porcelain=v1 --untracked-files=all; git diff | sha256sum); \
	$(MAKE) --no-print-directory generate >/dev/null; \
	after=$$(git status --porcelain=v1 --untracked-files=all; git diff | sha256sum); \
	[ "$$before" = "$$after" ] || { echo "make generate changed files: generated code is stale; run 'make generate' and commit"; git status --short; exit 1; }

.PHONY: golden
golden: ## Rewrite the golden files of the compiler and verdict tests (review the diff!).
	$(GO) test ./agent/compile ./verdict -run Golden -update

.PHONY: lint
lint: ## gofmt + go vet + staticcheck (pinned in go.mod as a tool).
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt: $$out"; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

##@ Build

.PHONY: build
build: ## Build bin/strictgate.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/strictgate ./cmd/strictgate

PREFIX ?= /usr/local/bin

.PHONY: install-plugin
install-plugin: build ## Install bin/strictgate as the kubectl plugin kubectl-strictgate into PREFIX (default /usr/local/bin): kubectl strictgate explain|inspect|status.
	install -d $(PREFIX)
	install -m 0755 $(BIN)/strictgate $(PREFIX)/kubectl-strictgate

.PHONY: image
image: build ## Pack bin/strictgate into an OCI image tarball in bin/ (no container engine needed).
	$(GO) run ./test/images/cmd/image -binary $(BIN)/strictgate -out $(BIN)

##@ Test

.PHONY: setup
setup: ## Install what the tests need on a fresh machine (Debian packages, bpffs).
	test/tools/setup.sh

.PHONY: test
test: setup generate-check lint ## Run every test: unit, Rego, real API server, real eBPF, one-node cluster.
	$(GO) test -timeout $(TEST_TIMEOUT) -count=1 ./...
	$(GO) test -run '^$$' -fuzz '^FuzzAdmission$$' -fuzztime $(FUZZTIME) ./webhook/
	$(GO) test -run '^$$' -fuzz '^FuzzNetworkPolicyValidation$$' -fuzztime $(FUZZTIME) ./webhook/

.PHONY: e2e
e2e: setup ## End-to-end tests on the one-node cluster.
	$(GO) test -timeout $(TEST_TIMEOUT) -count=1 -v ./test/e2e/...

.PHONY: bench
bench: setup ## Regenerate BENCHMARKS.md (test/bench: Go benchmarks + ratios against same-run baselines; never part of make test).
	nice -n 10 $(GO) run ./test/bench -out BENCHMARKS.md

# SCALE_FLAGS scales the run down, e.g. SCALE_FLAGS="-pods 3000 -nodes 100 -agents 10".
SCALE_FLAGS ?=
.PHONY: scale
scale: setup ## Scale harness (issue 11): what each agent receives at 30k pods / 1,000 nodes; prints BENCHMARKS.md's "Scale" rows.
	$(GO) run ./test/scale/cmd/scale -modes today,today-json,local-pods $(SCALE_FLAGS)

.PHONY: helm-test
helm-test: ## Lint and render the Helm chart and run its tests.
	$(GO) test -count=1 ./charts/...

##@ Cluster

.PHONY: cluster-up
cluster-up: setup ## Build (once) and start the one-node cluster; prints how to use it.
	$(GO) run ./test/cluster/cmd/cluster up

.PHONY: cluster-down
cluster-down: ## Stop the one-node cluster and remove everything it made.
	$(GO) run ./test/cluster/cmd/cluster down

.PHONY: cluster-status
cluster-status: ## Show the one-node cluster's state.
	$(GO) run ./test/cluster/cmd/cluster status

.PHONY: demo
demo: setup build ## The main job: cluster up, helm install, pods, policies, traffic, the gate (DEMO_FLAGS=--keep leaves it installed).
	$(GO) run ./test/demo $(DEMO_FLAGS)

##@ Conformance

.PHONY: conformance
conformance: setup ## Upstream netpol e2e suite (every [sig-network] Netpol spec) against strictgate, IPv4 then IPv6; writes CONFORMANCE.md.
	$(GO) run ./test/netpol/cmd/conformance $(CONFORMANCE_FLAGS)
