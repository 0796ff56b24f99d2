package sandbox

import (
	"fmt"
	"path"
	"strings"

	"github.com/berth-runtime/berth/internal/sysctl"

	"github.com/containerd/errdefs"
)

// sysctlKind is the kernel namespace a sysctl lives in.
type sysctlKind int

const (
	sysctlNet sysctlKind = iota + 1
	sysctlIPC
)

// SplitSysctls sorts a pod's sysctls by the kernel namespace that holds them,
// as Kubernetes classifies them: net.* belong to the network namespace;
// kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* to the IPC namespace.
// Setting anything else from a pod would change the whole node, so it is
// refused, as are net.* sysctls for a host-network pod and IPC ones for a
// host-IPC pod: those namespaces are the host's.
//
// Names may use dots or slashes as separators, as sysctl(8), kubelet and runc
// accept them: "net/ipv4/ip_forward" is "net.ipv4.ip_forward", and
// "net/ipv4/conf/eth0.100/forwarding" is "net.ipv4.conf.eth0/100.forwarding"
// (a slash in the dotted form stands for a dot inside one component). The
// returned maps use the dotted form and are nil when empty. Every error wraps
// errdefs.ErrInvalidArgument and names the offending sysctl.
func SplitSysctls(sysctls map[string]string, hostNetwork, hostIPC bool) (net, ipc map[string]string, err error) {
	for raw, value := range sysctls {
		name, kind, err := classifySysctl(raw, value)
		if err != nil {
			return nil, nil, err
		}
		var dst *map[string]string
		switch kind {
		case sysctlNet:
			if hostNetwork {
				return nil, nil, fmt.Errorf("%w: sysctl %q would change the host: the pod uses the host's network namespace",
					errdefs.ErrInvalidArgument, raw)
			}
			dst = &net
		case sysctlIPC:
			if hostIPC {
				return nil, nil, fmt.Errorf("%w: sysctl %q would change the host: the pod uses the host's IPC namespace",
					errdefs.ErrInvalidArgument, raw)
			}
			dst = &ipc
		}
		if *dst == nil {
			*dst = map[string]string{}
		}
		// Both spellings of one name may arrive in the same map; with
		// different values, which one wins would depend on map order.
		if prev, ok := (*dst)[name]; ok && prev != value {
			return nil, nil, fmt.Errorf("%w: sysctl %s is given twice with different values (%q, %q)",
				errdefs.ErrInvalidArgument, name, prev, value)
		}
		(*dst)[name] = value
	}
	return net, ipc, nil
}

// classifySysctl validates one sysctl and returns its dotted name and the
// namespace that holds it.
func classifySysctl(raw, value string) (string, sysctlKind, error) {
	name, err := normalizeSysctlName(raw)
	if err != nil {
		return "", 0, err
	}
	// A newline would let one value write a second line to the /proc/sys
	// file (some, like kernel.sem, parse several fields); NUL truncates.
	if strings.ContainsAny(value, "\n\r\x00") {
		return "", 0, fmt.Errorf("%w: sysctl %s: value %q contains a newline or NUL", errdefs.ErrInvalidArgument, raw, value)
	}
	switch {
	case strings.HasPrefix(name, "net."):
		return name, sysctlNet, nil
	case name == "kernel.sem", name == "kernel.sem_next_id",
		strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"),
		strings.HasPrefix(name, "fs.mqueue."):
		return name, sysctlIPC, nil
	case name == "kernel.hostname", name == "kernel.domainname":
		// They are UTS-namespaced, but the hostname comes from the pod
		// config, and a second source for it could only disagree.
		return "", 0, fmt.Errorf("%w: sysctl %q is not settable: the pod's hostname comes from its config",
			errdefs.ErrInvalidArgument, raw)
	}
	return "", 0, fmt.Errorf("%w: sysctl %q is not namespaced: setting it would change the host",
		errdefs.ErrInvalidArgument, raw)
}

// normalizeSysctlName returns the dotted form of a sysctl name given in
// either form, refusing names that are empty, have empty components or
// would escape /proc/sys once turned into a path.
func normalizeSysctlName(raw string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: sysctl name %q %s", errdefs.ErrInvalidArgument, raw, why)
	}
	if raw == "" {
		return "", bad("is empty")
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", bad("contains spaces or control characters")
	}
	name := raw
	// sysctl(8): the first separator decides the form. In the slash form a
	// dot is part of a component, so the two separators swap places.
	if i := strings.IndexAny(raw, "./"); i >= 0 && raw[i] == '/' {
		name = sysctl.SwapSeparators(raw)
	}
	for _, c := range strings.Split(name, ".") {
		if c == "" {
			return "", bad("has an empty component")
		}
		// "/" and "//" become "." and ".." in the path.
		if c == "/" || c == "//" {
			return "", bad("has a component that would leave /proc/sys")
		}
	}
	return name, nil
}

// sysctlPath is the /proc/sys file of a dotted sysctl name that
// normalizeSysctlName accepted.
func sysctlPath(name string) string {
	return path.Join("/proc/sys", sysctl.SwapSeparators(name))
}
