package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Repositories of the images the bench pushes; compare mode names the
// pause image in containerd's config before the registry exists.
const (
	workloadRepo = "berth-bench/busybox:1"
	pauseRepo    = "berth-bench/pause:1"
)

// runBench measures the runtimes of specs and returns the report. It
// leaves nothing behind in the runtimes: the run's pods and the images it
// pulled are removed, and the hosts.toml files it wrote into hostsDirs.
func runBench(ctx context.Context, c *config, specs []targetSpec, hostsDirs []string) (_ *Report, err error) {
	rep := &Report{
		Date: time.Now().UTC().Format(time.RFC3339),
		Host: hostInfo(),
		Settings: Settings{
			Iterations: c.opts.iterations, Concurrency: c.opts.concurrency, ConcurrentPods: c.opts.concurrentPods,
			DensityPods: c.opts.density, Queries: c.opts.queries, QueryBudget: c.opts.queryBudget.String(), Pulls: c.opts.pulls, Settle: c.opts.settle.String(),
		},
	}
	runID := randomHex(4)
	reg, err := startRegistry(c.regListen, c.regName)
	if err != nil {
		return nil, err
	}
	defer reg.close()
	for _, d := range hostsDirs {
		dir, err := reg.writeHostsTOML(d)
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(os.Stderr, "building and pushing images to %s (%s)\n", reg.Addr, reg.Name)
	imgs, err := buildImages(ctx, reg, c.opts.pulls > 0)
	if err != nil {
		return nil, err
	}
	rep.Settings.Image = imgs.workload
	if imgs.pull != nil {
		rep.Settings.PullImage = imgs.pull.ref
	}
	logRoot, err := os.MkdirTemp("", "berth-bench-logs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(logRoot)

	b := &bench{
		opts: c.opts,
		env:  &podEnv{runID: runID, image: imgs.workload, logRoot: logRoot, cgroupPrefix: c.cgroupPrefix},
		reg:  reg, imgs: imgs, log: os.Stderr,
	}
	for _, s := range specs {
		t, err := dialTarget(s.name, s.endpoint, s.sel)
		if err != nil {
			return nil, err
		}
		defer t.conn.Close()
		if t.name == "" {
			v, err := t.rt.Version(ctx, &runtimeapi.VersionRequest{})
			if err != nil {
				return nil, fmt.Errorf("%s: Version: %w", s.endpoint, err)
			}
			t.name, t.res.Name = v.RuntimeName, v.RuntimeName
		}
		b.targets = append(b.targets, t)
		rep.Runtimes = append(rep.Runtimes, t.res)
	}
	defer func() {
		for _, t := range b.targets {
			err = errors.Join(err, t.removeRunPods(runID), t.removeImages(imgs))
		}
		if c.cgroupPrefix != "" {
			err = errors.Join(err, removeCgroupTree(c.cgroupPrefix, false))
		}
		rep.Host.LoadEnd = loadAvg()
	}()
	if err := b.run(ctx); err != nil {
		return nil, err
	}
	return rep, nil
}

// removeImages removes the images the bench pulled into the runtime.
func (t *target) removeImages(imgs *benchImages) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	refs := []string{imgs.workload, imgs.pause}
	if imgs.pull != nil {
		refs = append(refs, imgs.pull.ref)
	}
	var errs []error
	for _, ref := range refs {
		_, err := t.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("%s: RemoveImage %s: %w", t.name, ref, err))
		}
	}
	return errors.Join(errs...)
}

func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), LoadStart: loadAvg()}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				h.MemoryMB = kb / 1024
			}
		}
	}
	return h
}

// removeCgroupTree removes the cgroup prefix (and everything below it) from
// every hierarchy, deepest first. The bench's pods are its only members, so
// with kill (compare mode, where the runtimes are the bench's own) any
// process still in it is killed first; otherwise a busy cgroup is left and
// reported.
func removeCgroupTree(prefix string, kill bool) error {
	tops, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", prefix))
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", prefix)); err == nil {
		tops = append(tops, filepath.Join("/sys/fs/cgroup", prefix))
	}
	var dirs []string
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	// Deepest first.
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, dir := range dirs {
		if kill {
			killCgroupMembers(dir)
		}
		var err error
		for range 100 { // killed processes leave the cgroup asynchronously
			if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) || !kill {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("cgroup %s left behind: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

func killCgroupMembers(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			fmt.Fprintf(os.Stderr, "killing process %d left in %s\n", pid, dir)
			_ = syscallKill(pid)
		}
	}
}
