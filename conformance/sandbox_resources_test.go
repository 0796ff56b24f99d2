package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// memoryLimit reads the memory limit of a cgroupfs path on v1 or v2.
func memoryLimit(t *testing.T, cgroup string) int64 {
	t.Helper()
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", cgroup, "memory.limit_in_bytes"),
		filepath.Join("/sys/fs/cgroup", cgroup, "memory.max"),
	} {
		if b, err := os.ReadFile(f); err == nil {
			v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", f, b)
			}
			return v
		}
	}
	t.Fatalf("no memory limit file for cgroup %s", cgroup)
	return 0
}

func TestPodCgroupResourcesAndLiveUpdate(t *testing.T) {
	tg := framework.NewTarget(t)
	d := tg.RequireOwnBerth(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	parent := "/berth-conformance-" + hex.EncodeToString(b)
	cfg := hostNetwork(podConfig("resources"))
	cfg.Linux.CgroupParent = parent
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512}
	cfg.Linux.Overhead = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 << 20}
	id := runPod(t, tg, cfg)
	if got := memoryLimit(t, parent); got != 72<<20 {
		t.Fatalf("pod memory limit %d, want resources + overhead = %d", got, 72<<20)
	}
	_, err := d.Runtime.UpdatePodSandboxResources(context.Background(), &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: id,
		Resources:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuShares: 512},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := memoryLimit(t, parent); got != 136<<20 {
		t.Fatalf("pod memory limit after update %d, want %d", got, 136<<20)
	}
	if _, err := d.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join("/sys/fs/cgroup/memory", parent), filepath.Join("/sys/fs/cgroup", parent)} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("pod cgroup %s left after removal", dir)
		}
	}
}
