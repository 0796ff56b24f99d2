package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Condition reasons. kubelet shows them in the node's Ready condition.
const (
	reasonNetworkPluginNotReady = "NetworkPluginNotReady"
	reasonRuntimeDirsUnusable   = "RuntimeDirsUnusable"
	reasonMonitorMissing        = "MonitorMissing"
)

// Status reports whether the runtime and the pod network are ready, the
// runtime handlers and their features, and with verbose the effective config.
//
// Handlers and features advertise only what works: kubelet and test suites
// change behaviour on them, so a feature is false until its work lands.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			s.runtimeCondition(),
			s.networkCondition(),
		}},
		RuntimeHandlers: s.runtimeHandlers(),
		// Strict supplemental groups (only the requested ones) is built.
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{"config": s.effectiveConfig().JSON()}
		var cidrs []string
		for _, c := range s.podCIDRs.Get() {
			cidrs = append(cidrs, c.String())
		}
		if len(cidrs) > 0 {
			resp.Info["podCIDRs"] = strings.Join(cidrs, ",")
		}
	}
	return resp, nil
}

// runtimeHandlers lists the default handler ("") and the configured ones.
// Recursive read-only mounts and user namespaces are advertised where the
// kernel has mount_setattr (runc's "rro"; ID-mapped mounts for the rootfs
// of a pod in a user namespace).
func (s *Server) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	features := func() *runtimeapi.RuntimeHandlerFeatures {
		return &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: s.recursiveReadOnly, UserNamespaces: s.userNamespaces}
	}
	out := []*runtimeapi.RuntimeHandler{{Name: "", Features: features()}}
	for _, h := range s.cfg.Runtime.Handlers {
		out = append(out, &runtimeapi.RuntimeHandler{Name: h, Features: features()})
	}
	return out
}

// kernelHasMountSetattr probes for mount_setattr(2) (Linux 5.12), which
// recursive read-only mounts need: with an invalid descriptor a kernel that
// has it answers EBADF, one that lacks it ENOSYS.
func kernelHasMountSetattr() bool {
	err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}

// hostSupportsUserNamespaces tells whether pods may get user namespaces:
// the kernel allows them (user.max_user_namespaces) and can mount overlayfs
// on ID-mapped layers (Linux 5.19, or a backport containerd's check finds).
func hostSupportsUserNamespaces() bool {
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil || strings.TrimSpace(string(b)) == "0" {
		return false
	}
	ok, err := overlayutils.SupportsIDMappedMounts()
	return ok && err == nil
}

// runtimeCondition checks that the root and state directories are still
// writable: without them nothing can be created or recorded.
func (s *Server) runtimeCondition() *runtimeapi.RuntimeCondition {
	for _, dir := range []string{s.cfg.Root, s.cfg.State} {
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			if _, statErr := os.Stat(dir); statErr != nil {
				err = statErr
			}
			return &runtimeapi.RuntimeCondition{
				Type:    runtimeapi.RuntimeReady,
				Status:  false,
				Reason:  reasonRuntimeDirsUnusable,
				Message: fmt.Sprintf("berth cannot write to %s (%v): check the disk and the directory, then restart berth", dir, err),
			}
		}
	}
	if err := unix.Access(s.monitorBinary, unix.X_OK); s.monitorBinary == "" || err != nil {
		return &runtimeapi.RuntimeCondition{
			Type:   runtimeapi.RuntimeReady,
			Status: false,
			Reason: reasonMonitorMissing,
			Message: fmt.Sprintf("berth cannot run its per-pod monitor %q: install berth-monitor next to berth "+
				"(make install) or set runtime.monitor_path, then restart berth", s.monitorBinary),
		}
	}
	return &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
}

// networkCondition is ready once a usable CNI config exists; it is re-read on
// every call (a directory listing and one small file) so that a CNI installed
// after berth started is picked up, as kubelet expects.
func (s *Server) networkCondition() *runtimeapi.RuntimeCondition {
	if err := s.network.Ready(); err != nil {
		return &runtimeapi.RuntimeCondition{
			Type:    runtimeapi.NetworkReady,
			Status:  false,
			Reason:  reasonNetworkPluginNotReady,
			Message: "Network plugin returns error: cni plugin not initialized: " + err.Error(),
		}
	}
	return &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
}
