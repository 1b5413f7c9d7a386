# oomwatch: build, generate, test, lint and benchmark.
GO        ?= go
TOOLS     := $(GO) tool -modfile=$(CURDIR)/tools/go.mod
# The repository's Go modules whose packages are tested and linted: the root (cluster, e2e, demo,
# tooling), each component, which a distribution can take alone, and the module of the tests that
# join the receiver with the processor.
MODULES   := . processor/oomcounterprocessor receiver/k8scontainerreceiver receiver/k8scontainerreceiver/internal/pipelinetest
# each-module,<command>: run the command in every module of MODULES, stopping at the first failure.
each-module = for m in $(MODULES); do echo ">> $$m: $(1)"; (cd $$m && $(1)) || exit 1; done
BENCH_OUT ?= _build/bench.txt

.PHONY: all help generate build test test-unit test-rules test-e2e e2e lint fmt tidy bench fuzz example clean image image-push

all: build

## help: what each target does (the ## comments of this Makefile).
help:
	@awk '/^## [a-z-]+:/ { sub(/^## /, ""); print; next } /^## / { sub(/^## /, "    "); print }' $(MAKEFILE_LIST)

## generate: regenerate mdatagen code for every component.
generate:
	cd processor/oomcounterprocessor && $(TOOLS) mdatagen metadata.yaml
	cd receiver/k8scontainerreceiver && $(TOOLS) mdatagen metadata.yaml

## build: compile every package and the collector (incremental: seconds when nothing changed).
build: collector
	$(call each-module,$(GO) build ./...)

# The collector distribution of builder-config.yaml. ocb writes the sources only when the builder
# config changes; go build is incremental on its own.
COLLECTOR_DIR := _build/otelcol-oomwatch
COLLECTOR     := $(COLLECTOR_DIR)/otelcol-oomwatch
# Every Go file of the root module, new ones too: the folders of other modules and builds are left out.
MODULE_SRCS   := $(shell find . \( -path ./.git -o -path ./_build -o -path ./hack/cluster/build -o -path ./processor/oomcounterprocessor/internal/benchcompare -o -path ./tools \) -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -type f -print)

.PHONY: collector
## collector: build _build/otelcol-oomwatch/otelcol-oomwatch with ocb.
collector: $(COLLECTOR)

$(COLLECTOR_DIR)/main.go: builder-config.yaml tools/go.mod
	@echo ">> generating the collector sources with ocb (first time: downloads the collector modules)"
	mkdir -p $(COLLECTOR_DIR)
	$(TOOLS) builder --config builder-config.yaml --skip-compilation
	@touch $@

$(COLLECTOR): $(COLLECTOR_DIR)/main.go $(MODULE_SRCS)
	@echo ">> building otelcol-oomwatch (cold: several minutes)"
	cd $(COLLECTOR_DIR) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o otelcol-oomwatch .

# The collector's container image (hack/image): the collector, the agent's init program, the
# host's CA certificates and the user 65532, no shell. Rebuilt every time (seconds): the tag and
# the certificates are inputs too.
IMAGE_TAG ?= docker.io/oomwatch/otelcol-oomwatch:dev
IMAGE_TAR := _build/image/otelcol-oomwatch.tar
STATEDIR  := _build/image/oomwatch-statedir

# The agent's init container, which hands the hostPath state directory to the collector's user.
$(STATEDIR): $(wildcard cmd/oomwatch-statedir/*.go)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmd/oomwatch-statedir

## image: write the collector's image, tagged IMAGE_TAG, to _build/image/otelcol-oomwatch.tar for
## docker load or ctr images import.
image: collector $(STATEDIR)
	$(GO) run ./hack/image build -binary $(COLLECTOR) -statedir $(STATEDIR) -tag $(IMAGE_TAG) -o $(IMAGE_TAR)

## image-push: push the collector's image to IMAGE=<registry>/<repo>:<tag>, with the credentials
## of docker login.
image-push:
	@if [ -z "$(IMAGE)" ]; then echo "image-push: name the image to push: make image-push IMAGE=<registry>/<repo>:<tag>" >&2; exit 1; fi
	@$(MAKE) --no-print-directory collector $(STATEDIR)
	$(GO) run ./hack/image push -binary $(COLLECTOR) -statedir $(STATEDIR) -tag $(IMAGE)

## test: everything a change must pass: unit tests with the race detector, then, as root, the
## end-to-end tests on the local cluster (the first run builds the cluster: many minutes).
test: collector test-unit test-rules test-e2e

## test-unit: the unit tests with the race detector, and benchcompare's agreement test. The
## kernel-level tests on cgroup v2 among them boot make v2-kernel's kernel in QEMU: as root,
## QEMU and the rest are installed if missing (cluster-deps); not root and without them, those
## tests are skipped, but an error with CI=true.
test-unit:
	@if [ "$$(id -u)" = 0 ] || [ -s _build/v2kernel/vmlinuz ] || PATH=$$PATH:/usr/sbin:/sbin command -v depmod >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory v2-kernel; \
	else \
		echo ">> the cgroup v2 kernel is not fetched: depmod (Debian's kmod) is missing (make cluster-deps as root installs it)"; \
	fi
	$(call each-module,$(GO) test -race -count=1 ./...)
	cd processor/oomcounterprocessor/internal/benchcompare && $(GO) test -count=1 -run TestSameOutput .

## test-rules: the shipped Prometheus alert rules against their unit tests (promtool, from
## Debian's prometheus package, which cluster-deps installs; as root it is installed if missing).
test-rules:
	@if ! command -v promtool >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory cluster-deps; fi
	@if command -v promtool >/dev/null 2>&1; then \
		cd deploy/prometheus && promtool test rules rules_test.yaml; \
	elif [ "$$CI" = true ]; then \
		echo "test-rules: CI=true but promtool is missing: install Debian's prometheus package (make cluster-deps as root)" >&2; exit 1; \
	else \
		echo ">> alert rule tests skipped: promtool is missing (make cluster-deps as root installs it)"; \
	fi

## test-e2e: the cluster's own tests, then the collector against the cluster, the Helm chart
## installed into a cluster of its own, then the collector against the cgroup v2 node in QEMU
## (root; the v2 node package ~3 min). One package at a time: they share
## the cluster's ports and folders. Not root: skipped, but an error in CI (CI=true), so a CI run
## cannot pass without them.
test-e2e: collector
	@if [ "$$(id -u)" != 0 ] && [ "$$CI" = true ]; then \
		echo "test-e2e: CI=true but not root: the end-to-end tests cannot run (the local cluster's real node needs root); run make test as root" >&2; \
		exit 1; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo ">> end-to-end tests skipped: the local cluster's real node needs root"; \
	else \
		$(MAKE) --no-print-directory cluster-bin cluster-deps image v2-node-kernel && \
		OOMWATCH_E2E=1 $(GO) test -p 1 -count=1 -timeout 40m ./internal/cluster/controlplane/ ./internal/cluster/e2e/ ./internal/cluster/helme2e/ ./internal/cluster/v2node/; \
	fi

## e2e: the end-to-end tests alone, verbose.
e2e: collector cluster-bin cluster-deps image
	OOMWATCH_E2E=1 $(GO) test -count=1 -v -timeout 40m ./internal/cluster/e2e/

## lint: gofmt, go vet and golangci-lint.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(call each-module,$(GO) vet ./... && $(TOOLS) golangci-lint run ./...)
	cd processor/oomcounterprocessor/internal/benchcompare && $(GO) vet ./... && $(TOOLS) golangci-lint run ./...

## fmt: gofmt every Go file.
fmt:
	gofmt -w $$(git ls-files '*.go')

## tidy: go mod tidy in every module of the repository.
tidy:
	$(call each-module,$(GO) mod tidy)
	cd tools && $(GO) mod tidy
	cd processor/oomcounterprocessor/internal/benchcompare && $(GO) mod tidy

## bench: processor benchmarks side by side with contrib's delta_to_cumulative.
bench:
	mkdir -p $(dir $(BENCH_OUT))
	cd processor/oomcounterprocessor/internal/benchcompare && $(GO) test -run '^$$' -bench . -benchmem -cpu 1,2 -count 1 . | tee $(CURDIR)/$(BENCH_OUT)
	cd processor/oomcounterprocessor && $(GO) test -run '^$$' -bench . -benchmem -cpu 1,2 -count 1 ./... | tee -a $(CURDIR)/$(BENCH_OUT)

## fuzz: run each fuzz target for FUZZTIME and keep what it found in the target's
## testdata/fuzz corpus (commit it), so every later test run replays it.
FUZZTIME ?= 30s
FUZZ_CACHE = $(shell $(GO) env GOCACHE)/fuzz/github.com/oomwatch/oomwatch
# fuzz-one,<package dir>,<target>; the package is tested from the module it belongs to.
define fuzz-one
	cd $(firstword $(subst /internal/, ,$(1))) && $(GO) test -run '^$$' -fuzz '^$(2)$$' -fuzztime $(FUZZTIME) $(CURDIR)/$(1)/
	mkdir -p $(1)/testdata/fuzz/$(2)
	if [ -d $(FUZZ_CACHE)/$(1)/$(2) ]; then cp -n $(FUZZ_CACHE)/$(1)/$(2)/* $(1)/testdata/fuzz/$(2)/; fi
endef
fuzz:
	$(call fuzz-one,processor/oomcounterprocessor/internal/counting,FuzzApply)
	$(call fuzz-one,processor/oomcounterprocessor/internal/checkpoint,FuzzDecode)
	$(call fuzz-one,processor/oomcounterprocessor,FuzzProcessMetrics)
	$(call fuzz-one,receiver/k8scontainerreceiver/internal/termination,FuzzVisible)
	$(call fuzz-one,receiver/k8scontainerreceiver/internal/containerstate,FuzzTrackerAgainstModel)
	$(call fuzz-one,receiver/k8scontainerreceiver/internal/containerstate,FuzzHorizonRecord)
	$(call fuzz-one,receiver/k8scontainerreceiver/internal/kubelet,FuzzParseOOMEvents)
	$(call fuzz-one,receiver/k8scontainerreceiver/internal/workload,FuzzOf)
	$(call fuzz-one,receiver/k8scontainerreceiver/internal/systemoom,FuzzParseVictim)
	$(call fuzz-one,receiver/k8scontainerreceiver/internal/cgroupoom,FuzzParseOOMKill)

## example: run the processor on a simulated container history.
example:
	cd processor/oomcounterprocessor && $(GO) run ./internal/example

## clean: remove _build (the cluster binaries too: the next cluster build is cold).
clean:
	rm -rf _build bin

# ---------------------------------------------------------------------------------------------
# Local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# containerd built from pinned Go modules
# (hack/cluster/build/*), Debian's runc and CNI plugins, images built from our own Go programs.
# See docs/local-cluster.md.
CLUSTER_DIR   := $(CURDIR)/_build/cluster
CLUSTER_BIN   := $(CLUSTER_DIR)/bin
CLUSTER_BUILD := hack/cluster/build
KUBE_BINS     := kube-apiserver kube-controller-manager kube-scheduler kubelet
CLUSTER_BINS  := $(addprefix $(CLUSTER_BIN)/,etcd containerd ctr containerd-shim-runc-v2 victoria-logs prometheus3 $(KUBE_BINS))
KUBE_LDFLAGS  := -s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean
CTRD_LDFLAGS  := -s -w -X github.com/containerd/containerd/v2/version.Version=v2.4.2
CTRD_TAGS     := no_btrfs,no_devmapper,no_zfs

.PHONY: cluster-bin cluster-deps v2-kernel v2-node-kernel cluster-images cluster-up cluster-down cluster-smoke v2-node-smoke v2-node-e2e cluster-e2e node-cost demo

## cluster-bin: build the cluster binaries that are missing (cold: many minutes, one build at a time).
# One build at a time even under `make -j`: two Kubernetes builds at once need over 4 GB and both
# cores. The Kubernetes binaries that are missing are built by one `go build`, which compiles the
# packages they share once and keeps both cores busy until the last link.
cluster-bin:
	@for b in $(filter-out $(addprefix $(CLUSTER_BIN)/,$(KUBE_BINS)),$(CLUSTER_BINS)); do [ -x $$b ] || $(MAKE) --no-print-directory -j1 $$b || exit 1; done
	@missing=; for b in $(KUBE_BINS); do [ -x $(CLUSTER_BIN)/$$b ] || missing="$$missing $$b"; done; \
	[ -z "$$missing" ] || $(MAKE) --no-print-directory -j1 kube-build KUBE_BUILD="$$missing"

# Each binary is built only when it is absent; `rm` it (or `make clean`) to rebuild.
$(CLUSTER_BIN)/etcd:
	@echo ">> building etcd v3.7.3 (cold: about a minute)"
	cd $(CLUSTER_BUILD)/etcd && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ .

# The logs backend of the end-to-end tests.
$(CLUSTER_BIN)/victoria-logs:
	@echo ">> building VictoriaLogs v1.52.2 (cold: a few minutes)"
	cd $(CLUSTER_BUILD)/victorialogs && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs

# Prometheus 3, the OTLP metrics backend of the end-to-end tests (Debian's prometheus is 2.x).
# Without service discovery plugins: the tests give it no targets to discover.
$(CLUSTER_BIN)/prometheus3:
	@echo ">> building Prometheus v3.16.0 (module v0.316.0; cold: about 2 minutes)"
	cd $(CLUSTER_BUILD)/prometheus && CGO_ENABLED=0 $(GO) build -trimpath -tags remove_all_sd \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=3.16.0' -o $@ github.com/prometheus/prometheus/cmd/prometheus

# kube-build builds the Kubernetes commands named in KUBE_BUILD with one `go build -o dir/`.
.PHONY: kube-build
kube-build:
	@echo ">> building $(strip $(KUBE_BUILD)) v1.37.2 in one go build (cold, all four: about 20 minutes on 2 cores)"
	mkdir -p $(CLUSTER_BIN)
	cd $(CLUSTER_BUILD)/kubernetes && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(CLUSTER_BIN)/ $(addprefix k8s.io/kubernetes/cmd/,$(KUBE_BUILD))

$(addprefix $(CLUSTER_BIN)/,$(KUBE_BINS)):
	@$(MAKE) --no-print-directory kube-build KUBE_BUILD=$(notdir $@)

$(CLUSTER_BIN)/containerd $(CLUSTER_BIN)/ctr $(CLUSTER_BIN)/containerd-shim-runc-v2:
	@echo ">> building $(notdir $@) v2.4.2"
	cd $(CLUSTER_BUILD)/containerd && CGO_ENABLED=0 $(GO) build -trimpath -tags '$(CTRD_TAGS)' -ldflags '$(CTRD_LDFLAGS)' -o $@ github.com/containerd/containerd/v2/cmd/$(notdir $@)

## cluster-deps: install the Debian packages the node needs (runc, CNI plugins); idempotent.
cluster-deps:
	hack/cluster/install-deps.sh

## v2-kernel: put Debian's kernel and the modules its QEMU guest needs into _build/v2kernel, for
## the kernel-level tests on cgroup v2; nothing when already there. As root, cluster-deps first
## when QEMU, busybox-static, cpio or kmod is missing.
V2_PACKAGES := qemu-system-x86 busybox-static cpio kmod
v2-kernel:
	@if [ "$$(id -u)" = 0 ]; then \
		for p in $(V2_PACKAGES); do \
			dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || { $(MAKE) --no-print-directory cluster-deps; break; }; \
		done; \
	fi
	hack/v2kernel/fetch-kernel.sh _build/v2kernel

## v2-node-kernel: the same kernel for the cgroup v2 node, with the modules of the virtio network
## card (the guest reaches the API server through QEMU's user-mode network), of overlayfs (the
## guest's root and containerd's snapshots) and of the virtio disk with ext4 (the kubelet's folder,
## whose emptyDirs keep page cache the kernel can reclaim; crc32c for its checksums) on top, in _build/v2node/kernel;
## nothing when there.
v2-node-kernel: v2-kernel
	hack/v2kernel/fetch-kernel.sh _build/v2node/kernel virtio_pci 9pnet_virtio 9p virtio_net overlay virtio_blk ext4 crc32c_generic

## cluster-images: build the pause and workload images into _build/cluster/images.
cluster-images:
	$(GO) run ./hack/cluster/localcluster images

## cluster-up: build what is missing, then start the control plane and a real node (root).
cluster-up: cluster-bin cluster-deps
	$(GO) run ./hack/cluster/localcluster up

## cluster-down: stop the cluster and undo every change to the host; safe to run twice.
cluster-down:
	$(GO) run ./hack/cluster/localcluster down

## cluster-smoke: start a cluster, see a 64Mi container OOM-killed by the kernel, tear down (root).
cluster-smoke: cluster-bin cluster-deps
	OOMWATCH_E2E=1 $(GO) test -count=1 -v -run TestSmokeRealOOMKill -timeout 10m ./internal/cluster/controlplane/

## v2-node-smoke: start the control plane and a cgroup v2 node in a QEMU guest (TCG), see a 64Mi
## container OOM-killed there (OOMKilled, oom_group_kill 1 in its cgroup), measure the guest
## kubelet's CPU time over a minute, tear down (root; ~2 min).
## go run ./hack/v2node/down cleans up after an interrupted run.
v2-node-smoke: cluster-bin cluster-deps v2-node-kernel
	OOMWATCH_E2E=1 OOMWATCH_V2_CPU=1 $(GO) test -count=1 -v -run TestV2NodeSmoke -timeout 20m ./internal/cluster/v2node/

## v2-node-e2e: the OOM kills that count differently on cgroup v2, on the v2 node, with the
## collector running in the guest and exporting to OTLP backends on the host: container kills
## through back-off, a child's OOM as a group kill, singleProcessOOMKill, both process-kill
## sources against memory.events, the Summary API's PSI fields (root; ~2.5 min).
v2-node-e2e: collector cluster-bin cluster-deps v2-node-kernel
	OOMWATCH_E2E=1 $(GO) test -count=1 -v -run 'TestV2Node' -skip TestV2NodeSmoke -timeout 20m ./internal/cluster/v2node/

## node-cost: what the agent costs the real node with each process-kill source (its CPU and RSS,
## and the kubelet CPU it causes), 20 pods, OOMWATCH_NODE_COST_WINDOW (2m) per phase (root).
node-cost: collector cluster-bin cluster-deps
	OOMWATCH_E2E=1 OOMWATCH_NODE_COST=1 $(GO) test -count=1 -v -run '^TestNodeCostOfEachProcessKillSource$$' -timeout 30m ./internal/cluster/e2e/

## demo: build what is missing, start the local cluster with a workload whose containers get
## OOM-killed, run the collector, and show the counts live (root; Ctrl-C tears everything down).
DEMO_ARGS ?=
demo:
	@if [ "$$(id -u)" -ne 0 ]; then echo "make demo needs root: it starts containerd and a kubelet on this machine"; exit 1; fi
	@echo ">> make demo: first building what is missing. On a fresh machine that is the cluster binaries"
	@echo "   (etcd, the Kubernetes binaries, containerd) and the collector: many minutes, over 20 on 2 cores."
	@$(MAKE) --no-print-directory cluster-bin cluster-deps collector
	@echo ">> building the demo"
	@$(GO) build -o $(CURDIR)/_build/demo/oomwatch-demo ./cmd/oomwatch-demo
	$(CURDIR)/_build/demo/oomwatch-demo $(DEMO_ARGS)

## cluster-e2e: every test of the local cluster itself against a real cluster (root).
cluster-e2e: cluster-bin cluster-deps
	OOMWATCH_E2E=1 $(GO) test -count=1 -v -timeout 15m ./internal/cluster/controlplane/
