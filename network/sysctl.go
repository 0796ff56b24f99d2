package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berth-runtime/berth/internal/sysctl"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/plugins/pkg/ns"
)

// ApplySysctls writes net.* sysctls (kubelet's pod-level, namespaced ones)
// inside the pinned network namespace. /proc/sys/net resolves to the network
// namespace of the thread that opens it, so the writes happen on a thread
// switched into the pod's namespace and never touch the host's values.
//
// Keys use dots as separators; a '/' in a key stands for a literal dot in
// one component (net.ipv4.conf.eth0/100.forwarding names interface
// eth0.100), as kubelet and runc write them. Keys outside net.*, keys that
// would escape /proc/sys/net and sysctls this kernel does not have in a
// network namespace are errdefs.ErrInvalidArgument naming the key; nothing is
// written unless every key is valid.
func ApplySysctls(pinPath string, sysctls map[string]string) error {
	if len(sysctls) == 0 {
		return nil
	}
	keys := make([]string, 0, len(sysctls))
	paths := make(map[string]string, len(sysctls))
	for k, v := range sysctls {
		p, err := sysctlPath(k)
		if err != nil {
			return err
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' }) {
			return fmt.Errorf("%w: sysctl %s: value %q contains control characters", errdefs.ErrInvalidArgument, k, v)
		}
		keys = append(keys, k)
		paths[k] = p
	}
	sort.Strings(keys) // deterministic order, so a failure is reproducible

	err := ns.WithNetNSPath(pinPath, func(ns.NetNS) error {
		for _, k := range keys {
			if err := writeSysctl(paths[k], sysctls[k]); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("%w: sysctl %s does not exist in a pod network namespace on this kernel", errdefs.ErrInvalidArgument, k)
				}
				return fmt.Errorf("sysctl %s=%q: %w", k, sysctls[k], err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply sysctls in %s: %w", pinPath, nsError(err))
	}
	return nil
}

// writeSysctl writes without O_CREAT or O_TRUNC: /proc/sys files exist or
// they do not, and a kernel-rejected value surfaces as the write's error.
func writeSysctl(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// sysctlPath turns a dotted sysctl name into its file under /proc/sys/net,
// refusing anything that is not a plain net.* name.
func sysctlPath(key string) (string, error) {
	if !strings.HasPrefix(key, "net.") {
		return "", fmt.Errorf("%w: sysctl %q is not a net.* sysctl; only those are set in the pod network namespace", errdefs.ErrInvalidArgument, key)
	}
	rel := sysctl.SwapSeparators(key)
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." || c == ".." || strings.ContainsRune(c, 0) {
			return "", fmt.Errorf("%w: sysctl %q is not a valid sysctl name", errdefs.ErrInvalidArgument, key)
		}
	}
	p := filepath.Join("/proc/sys", rel)
	if !strings.HasPrefix(p, "/proc/sys/net/") {
		return "", fmt.Errorf("%w: sysctl %q is not a valid sysctl name", errdefs.ErrInvalidArgument, key)
	}
	return p, nil
}
