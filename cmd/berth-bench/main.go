// Command berth-bench measures a CRI runtime the way kubelet uses it, and
// compares runtimes side by side (issue 9): pod start and teardown latency
// one pod at a time and with concurrent clients, the time until 100 pods
// run, the runtime's own memory (PSS of its daemon and per-pod processes)
// at 0, 20 and 100 pods, the latency of the read RPCs kubelet polls at 100
// pods, and image pull + unpack throughput.
//
// It speaks CRI to any endpoint and brings its images along: an in-process
// registry on 127.0.0.1 serves busybox images built from the host's
// busybox-static (conformance/framework), so nothing is fetched from the
// internet. Runtimes reach that registry under a name of its own
// (--registry-name) through hosts.toml files the bench writes into their
// registry config dirs (--hosts-dir).
//
//	berth-bench --endpoint unix:///run/berth/berth.sock --daemon-pid $(pidof berth) \
//	    --per-pod-process-name berth-monitor --hosts-dir /etc/berth/certs.d
//	berth-bench compare --berth bin/berth --cni-bin-dir bin/cni   # what `make bench-compare` runs
//
// With several endpoints every phase runs on each runtime in turn,
// alternating which goes first, and the table shows the ratio of the first
// to the second against issue 9's targets. See docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// listFlag is a repeatable string flag; a comma also separates values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, strings.Split(v, ",")...)
	return nil
}

// config is the parsed command line.
type config struct {
	opts         options
	density      string
	jsonPath     string
	regListen    string
	regName      string
	cgroupPrefix string
	noPull       bool

	// run mode: one entry per runtime, matched by position.
	endpoints, names, daemonPIDs, perPodNames, perPodMatches, hostsDirs listFlag

	// compare mode
	berthBin, containerdBin, cniBinDir, workDir string
	keep                                        bool
	runtimes                                    listFlag
}

func (c *config) benchFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.opts.iterations, "iterations", 50, "pods started and torn down one at a time, per runtime")
	fs.IntVar(&c.opts.warmup, "warmup", 3, "untimed pods per runtime before measuring")
	fs.IntVar(&c.opts.concurrency, "concurrency", 10, "concurrent clients for the concurrent and density phases")
	fs.IntVar(&c.opts.concurrentPods, "concurrent-pods", 50, "pods started by the concurrent clients, per runtime")
	fs.StringVar(&c.density, "density", "20,100", "pod counts at which memory is measured; the largest also times the read RPCs")
	fs.IntVar(&c.opts.queries, "queries", 100, "calls of each read RPC at the largest density")
	fs.DurationVar(&c.opts.queryBudget, "query-budget", 20*time.Second, "time after which a read RPC stops being called (with at least 5 samples)")
	fs.IntVar(&c.opts.pulls, "pulls", 5, "pulls of the 5-layer ~100 MB image per runtime")
	fs.BoolVar(&c.noPull, "no-pull", false, "skip building and pulling the 100 MB image")
	fs.DurationVar(&c.opts.settle, "settle", 3*time.Second, "wait before each memory sample (berth's monitors trim after 2 s idle)")
	fs.StringVar(&c.jsonPath, "json", "", "also write the results as JSON to this file (- for stdout)")
	fs.StringVar(&c.regListen, "registry-listen", "127.0.0.1:0", "address of the in-process registry")
	fs.StringVar(&c.regName, "registry-name", "registry.berth-bench.invalid", "registry host in the image references (mapped to the registry by hosts.toml); empty uses the registry's address")
	fs.StringVar(&c.cgroupPrefix, "cgroup-prefix", "/berth-bench-"+strconv.Itoa(os.Getpid()),
		"pods get cgroup parent <prefix>/<runtime>/pod<uid> (cgroupfs); empty sends none")
}

func parseArgs(args []string) (mode string, c *config, err error) {
	c = &config{}
	mode = "run"
	if len(args) > 0 && args[0] == "compare" {
		mode, args = "compare", args[1:]
	}
	fs := flag.NewFlagSet("berth-bench "+mode, flag.ContinueOnError)
	c.benchFlags(fs)
	if mode == "compare" {
		fs.StringVar(&c.berthBin, "berth", "bin/berth", "the berth binary (berth-monitor beside it)")
		fs.StringVar(&c.containerdBin, "containerd", "containerd", "the containerd binary (Debian's: shim and runc from $PATH)")
		fs.StringVar(&c.cniBinDir, "cni-bin-dir", "bin/cni", "CNI plugins both runtimes use (bridge, host-local, loopback)")
		fs.StringVar(&c.workDir, "workdir", "", "where to make the run's work directory (both daemons' roots, states, sockets, logs); default $TMPDIR")
		fs.BoolVar(&c.keep, "keep", false, "keep the work directory (logs) after the run")
		fs.Var(&c.runtimes, "runtimes", "runtimes to start and measure, in this order (default berth,containerd)")
	} else {
		fs.Var(&c.endpoints, "endpoint", "CRI endpoint (unix:///...); repeat to compare runtimes")
		fs.Var(&c.names, "name", "name of the runtime in the report (default: its Version runtime_name), per endpoint")
		fs.Var(&c.daemonPIDs, "daemon-pid", "PID of the runtime's daemon, per endpoint (0: no memory figures)")
		fs.Var(&c.perPodNames, "per-pod-process-name", "program name of the runtime's per-pod processes, per endpoint (berth-monitor, containerd-shim-runc-v2)")
		fs.Var(&c.perPodMatches, "per-pod-process-match", "string the per-pod processes' command line must contain (state dir or socket), per endpoint")
		fs.Var(&c.hostsDirs, "hosts-dir", "registry config dir (certs.d layout) of a runtime, to write the registry's hosts.toml into; repeatable")
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	if fs.NArg() > 0 {
		return "", nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, f := range strings.Split(c.density, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return "", nil, fmt.Errorf("--density %q: want positive pod counts", c.density)
		}
		c.opts.density = append(c.opts.density, n)
	}
	if mode == "compare" && len(c.runtimes) == 0 {
		c.runtimes = listFlag{"berth", "containerd"}
	}
	slices.Sort(c.opts.density)
	if c.noPull {
		c.opts.pulls = 0
	}
	if c.opts.iterations <= 0 || c.opts.concurrency <= 0 || c.opts.concurrentPods < 2 || c.opts.queries <= 0 {
		return "", nil, errors.New("--iterations, --concurrency and --queries must be positive, --concurrent-pods at least 2")
	}
	return mode, c, nil
}

// targetSpecs turns the run-mode per-endpoint flags into selectors.
func (c *config) targetSpecs() ([]targetSpec, error) {
	if len(c.endpoints) == 0 {
		return nil, errors.New("no --endpoint")
	}
	at := func(l listFlag, i int, name string) (string, error) {
		switch len(l) {
		case 0:
			return "", nil
		case len(c.endpoints):
			return l[i], nil
		}
		return "", fmt.Errorf("%d --%s for %d --endpoint: give one per endpoint", len(l), name, len(c.endpoints))
	}
	var specs []targetSpec
	for i, ep := range c.endpoints {
		s := targetSpec{endpoint: ep}
		var pid string
		var err error
		for _, f := range []struct {
			l    listFlag
			name string
			dst  *string
		}{{c.names, "name", &s.name}, {c.daemonPIDs, "daemon-pid", &pid}, {c.perPodNames, "per-pod-process-name", &s.sel.Name}, {c.perPodMatches, "per-pod-process-match", &s.sel.Match}} {
			if *f.dst, err = at(f.l, i, f.name); err != nil {
				return nil, err
			}
		}
		if pid != "" {
			if s.sel.DaemonPID, err = strconv.Atoi(pid); err != nil {
				return nil, fmt.Errorf("--daemon-pid %q: %w", pid, err)
			}
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// targetSpec is a runtime to measure.
type targetSpec struct {
	name, endpoint string
	sel            procSelector
}

func main() {
	mode, c, err := parseArgs(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var rep *Report
	if mode == "compare" {
		rep, err = runCompare(ctx, c)
	} else {
		var specs []targetSpec
		if specs, err = c.targetSpecs(); err == nil {
			rep, err = runBench(ctx, c, specs, c.hostsDirs)
		}
	}
	if rep != nil {
		if werr := writeOutputs(c, rep); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth-bench:", err)
		os.Exit(1)
	}
}

func writeOutputs(c *config, rep *Report) error {
	small, large := rep.Settings.DensityPods[0], rep.Settings.DensityPods[len(rep.Settings.DensityPods)-1]
	ms := metrics(small, large)
	rep.Comparisons = compare(rep.Runtimes, ms)
	writeTable(os.Stdout, rep.Runtimes, ms, rep.Comparisons)
	writeNotes(os.Stdout, rep)
	if c.jsonPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if c.jsonPath == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(c.jsonPath, b, 0o644)
}
