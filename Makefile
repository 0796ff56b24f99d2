# Berth build, install and test. `make run` and `make test` are the two
# commands README.md promises on a fresh Debian machine with Go installed.

GO        ?= go
PREFIX    ?= /usr/local
CNI_BIN   ?= /opt/cni/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
TAGS      := seccomp
LDFLAGS   := -X github.com/berth-runtime/berth/internal/version.Version=$(VERSION)
CNI_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/containernetworking/plugins 2>/dev/null)
CNI_PLUGINS := main/bridge ipam/host-local main/loopback meta/portmap meta/bandwidth meta/firewall meta/tuning
# Debian packages the build and the tests need.
APT_PACKAGES := gcc make git pkg-config libseccomp-dev busybox-static iptables iproute2

export CGO_ENABLED := 1

.PHONY: all build cni-plugins install deps run test chaos fmt-check vet unit bench fuzz clean e2e bench-compare critest

all: build cni-plugins

## build: bin/berth (cgo, seccomp), its lean per-pod monitor bin/berth-monitor (pure Go, static)
## and bin/berth-helper, the monitors' thin libcontainer helper and container init
build:
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/berth ./cmd/berth
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/berth-helper ./cmd/berth-helper
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/berth-monitor ./cmd/berth-monitor

## cni-plugins: the CNI plugins berth's default config uses, into bin/cni
cni-plugins:
	@mkdir -p bin/cni
	@for p in $(CNI_PLUGINS); do \
		echo "CNI plugin $$(basename $$p) $(CNI_VERSION)"; \
		CGO_ENABLED=0 $(GO) build -o bin/cni/$$(basename $$p) \
			-ldflags '-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(CNI_VERSION)' \
			github.com/containernetworking/plugins/plugins/$$p || exit 1; \
	done

## install: berth, CNI plugins, the systemd unit; default config and CNI network only where none exist
install: build cni-plugins
	install -D -m 0755 bin/berth $(DESTDIR)$(PREFIX)/bin/berth
	install -D -m 0755 bin/berth-monitor $(DESTDIR)$(PREFIX)/bin/berth-monitor
	install -D -m 0755 bin/berth-helper $(DESTDIR)$(PREFIX)/bin/berth-helper
	install -d -m 0755 $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/bin/berth|$(PREFIX)/bin/berth|' contrib/systemd/berth.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/berth.service
	install -d -m 0755 $(DESTDIR)$(CNI_BIN)
	install -m 0755 bin/cni/* $(DESTDIR)$(CNI_BIN)/
	@if [ ! -e $(DESTDIR)/etc/berth/berth.toml ]; then \
		install -D -m 0644 contrib/berth.toml $(DESTDIR)/etc/berth/berth.toml; \
		echo "installed /etc/berth/berth.toml"; \
	else echo "kept existing /etc/berth/berth.toml"; fi
	@install -d -m 0755 $(DESTDIR)/etc/cni/net.d
	@if ls $(DESTDIR)/etc/cni/net.d/*.conf $(DESTDIR)/etc/cni/net.d/*.conflist $(DESTDIR)/etc/cni/net.d/*.json >/dev/null 2>&1; then \
		echo "kept existing CNI config in /etc/cni/net.d"; \
	else \
		install -m 0644 contrib/cni/10-berth-bridge.conflist $(DESTDIR)/etc/cni/net.d/; \
		echo "installed /etc/cni/net.d/10-berth-bridge.conflist"; \
	fi

## deps: Debian packages for building and testing (needs root)
deps:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then echo "apt packages present"; else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); fi
	$(GO) mod download

## run: set everything up and start berth in the foreground on the default socket
run: deps install
	exec $(PREFIX)/bin/berth

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags '$(TAGS) berth_testhooks' ./...

## test: gofmt, go vet, and every test (unit, integration, conformance) with -race, as root
test: fmt-check vet cni-plugins
	@if [ "$$(id -u)" != 0 ]; then echo "make test runs real containers: run it as root"; exit 1; fi
	BERTH_INTEGRATION=1 BERTH_RACE=1 BERTH_CNI_PLUGINS=$(CURDIR)/bin/cni \
		$(GO) test -race -tags '$(TAGS)' -timeout 25m -count=1 ./...

## chaos: the chaos test alone, big: N stable pods while berth is SIGKILLed KILLS times amid pod churn (as root)
N     ?= 30
KILLS ?= 6
chaos: cni-plugins
	@if [ "$$(id -u)" != 0 ]; then echo "make chaos runs real containers: run it as root"; exit 1; fi
	BERTH_INTEGRATION=1 BERTH_CNI_PLUGINS=$(CURDIR)/bin/cni BERTH_CHAOS_PODS=$(N) BERTH_CHAOS_KILLS=$(KILLS) \
		$(GO) test -tags '$(TAGS)' -timeout 30m -count=1 -v -run '^TestChaosDaemonKills$$' ./conformance/

## bench: benchmarks (speed and memory live here, never in timed test assertions)
bench: cni-plugins
	@if [ "$$(id -u)" != 0 ]; then echo "make bench runs real pods and pulls: run it as root"; exit 1; fi
	BERTH_CNI_PLUGINS=$(CURDIR)/bin/cni $(GO) test -tags '$(TAGS)' -run '^$$' -bench . -benchmem ./...

## fuzz: each fuzz target (request validation) for FUZZTIME, one after another; a
## crasher lands in <pkg>/testdata/fuzz/<Target>/ and then runs in every `go test`
FUZZTIME         ?= 2m
FUZZMINIMIZETIME ?= 1s
FUZZ_TARGETS     ?= ./cri:FuzzRunPodSandboxConfig ./cri:FuzzCreateContainerConfig ./cri:FuzzMount \
	./cri:FuzzExecSyncRequest ./sandbox:FuzzLogPath ./sandbox:FuzzLabelSelector ./image:FuzzImageReference
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -tags '$(TAGS)' -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) \
			-fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg || exit 1; \
	done

## e2e: berth under a real kubelet and control plane (etcd, kube-apiserver, controller-manager,
## scheduler, all on 127.0.0.1), as root. The Kubernetes binaries are built once per version
## (conformance/e2e/k8s/K8S_VERSION) into bin/k8s/<version>/ by conformance/e2e/build-k8s.sh.
E2E_APT_PACKAGES := etcd-server
K8S_VERSION       = $(shell cat conformance/e2e/k8s/K8S_VERSION)
E2E_TIMEOUT      ?= 30m
e2e: build cni-plugins
	@if [ "$$(id -u)" != 0 ]; then echo "make e2e runs a kubelet and containers: run it as root"; exit 1; fi
	@if dpkg -s $(E2E_APT_PACKAGES) >/dev/null 2>&1; then echo "apt packages for e2e present"; else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(E2E_APT_PACKAGES); fi
	GO=$(GO) conformance/e2e/build-k8s.sh
	BERTH_E2E=1 BERTH_K8S_BIN=$(CURDIR)/bin/k8s/$(K8S_VERSION) BERTH_CNI_PLUGINS=$(CURDIR)/bin/cni \
		BERTH_BINARY=$(CURDIR)/bin/berth \
		$(GO) test -tags '$(TAGS)' -timeout $(E2E_TIMEOUT) -count=1 -v ./conformance/e2e/

## critest: cri-tools' CRI validation suite (critest, and crictl beside it, built from
## conformance/critest/tools) against a berth of its own, as root. The images it pulls are
## stand-ins served from an in-process registry (conformance/critest). CRITEST_FOCUS and
## CRITEST_SKIP add ginkgo focus/skip regexps; the full output is in $TMPDIR/berth-critest.log.
CRITEST_FOCUS ?=
CRITEST_SKIP  ?=
critest: build cni-plugins
	@if [ "$$(id -u)" != 0 ]; then echo "make critest runs containers: run it as root"; exit 1; fi
	cd conformance/critest/tools && GOWORK=off GOTOOLCHAIN=local $(GO) test -c -o $(CURDIR)/bin/critest sigs.k8s.io/cri-tools/cmd/critest
	cd conformance/critest/tools && GOWORK=off GOTOOLCHAIN=local $(GO) build -o $(CURDIR)/bin/crictl sigs.k8s.io/cri-tools/cmd/crictl
	BERTH_CRITEST=1 BERTH_CRITEST_BIN=$(CURDIR)/bin/critest BERTH_CNI_PLUGINS=$(CURDIR)/bin/cni \
		BERTH_BINARY=$(CURDIR)/bin/berth BERTH_CRITEST_FOCUS='$(CRITEST_FOCUS)' BERTH_CRITEST_SKIP='$(CRITEST_SKIP)' \
		$(GO) test -tags '$(TAGS)' -timeout 40m -count=1 -v -run TestCritest ./conformance/critest/

## bench-compare: berth and a private containerd (Debian's, with runc) side by side, as root: the
## same CRI benchmark (cmd/berth-bench) against both, interleaved, and a table of berth/containerd
## ratios against issue 9's targets (docs/benchmarks.md). Both daemons run under a temp dir of
## their own and are stopped and cleaned up afterwards. BENCH_ARGS adds berth-bench flags.
BENCH_APT_PACKAGES := containerd runc busybox-static
BENCH_ARGS        ?=
bench-compare: build cni-plugins
	@if [ "$$(id -u)" != 0 ]; then echo "make bench-compare starts container runtimes: run it as root"; exit 1; fi
	@if dpkg -s $(BENCH_APT_PACKAGES) >/dev/null 2>&1; then echo "apt packages for bench-compare present"; else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_APT_PACKAGES); fi
	$(GO) build -o bin/berth-bench ./cmd/berth-bench
	bin/berth-bench compare --berth bin/berth --cni-bin-dir bin/cni --json bin/bench-compare.json $(BENCH_ARGS)

clean:
	rm -rf bin
