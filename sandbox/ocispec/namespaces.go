package ocispec

import (
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// namespaces lists the container's namespaces in containerd's order (pid,
// ipc, uts, mount, network, cgroup). A namespace that is the host's is left
// out. containerd joins its pause container's namespaces (/proc/<pid>/ns/*),
// which are the host's for a host-network/IPC/PID pod; berth joins the
// pod's pinned namespaces instead, or stays in the host's.
//
// As in containerd, network, IPC and UTS follow the pod: the container's
// own network and IPC modes (which kubelet always sets like the pod's) are
// only checked to be POD or NODE.
func (g *Generator) namespaces(in Input) ([]specs.LinuxNamespace, error) {
	sc, pod := in.Container.Security, in.Pod
	for _, m := range []struct {
		field string
		mode  NamespaceMode
	}{{"namespace_options.network", sc.NetworkNS}, {"namespace_options.ipc", sc.IPCNS}} {
		if m.mode != NamespacePod && m.mode != NamespaceNode {
			return nil, invalidf("%s must be POD or NODE, not %d", m.field, m.mode)
		}
	}
	var ns []specs.LinuxNamespace
	join := func(t specs.LinuxNamespaceType, path string) error {
		if !filepath.IsAbs(path) {
			return invalidf("the %s namespace to join, %q, is not an absolute path", t, path)
		}
		ns = append(ns, specs.LinuxNamespace{Type: t, Path: path})
		return nil
	}
	// First: libcontainer joins the user namespace before the others, and
	// the namespaces it creates (PID, mount, cgroup) are then owned by it.
	if pod.UserNS != "" {
		if err := join(specs.UserNamespace, pod.UserNS); err != nil {
			return nil, err
		}
	}

	switch sc.PIDNS {
	case NamespacePod:
		switch {
		case pod.PIDNS != "":
			if err := join(specs.PIDNamespace, pod.PIDNS); err != nil {
				return nil, err
			}
		case pod.HostPID:
		default:
			return nil, invalidf("namespace_options.pid is POD but pod %s does not share a PID namespace (its sandbox has pid CONTAINER); use CONTAINER", pod.ID)
		}
	case NamespaceContainer:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	case NamespaceNode:
	case NamespaceTarget:
		if sc.TargetPIDNS == "" {
			return nil, invalidf("namespace_options.pid is TARGET but no target container's PID namespace was given")
		}
		if err := join(specs.PIDNamespace, sc.TargetPIDNS); err != nil {
			return nil, err
		}
	default:
		return nil, invalidf("namespace_options.pid %d is not POD, CONTAINER, NODE or TARGET", sc.PIDNS)
	}

	for _, p := range []struct {
		t    specs.LinuxNamespaceType
		path string
		host bool
		what string
	}{
		{specs.IPCNamespace, pod.IPCNS, pod.HostIPC, "IPC namespace and is not host-IPC"},
		// The UTS namespace is the host's exactly for host-network pods.
		{specs.UTSNamespace, pod.UTSNS, pod.HostNetwork, "UTS namespace and is not host-network"},
	} {
		switch {
		case p.path != "":
			if err := join(p.t, p.path); err != nil {
				return nil, err
			}
		case !p.host:
			return nil, preconditionf("pod %s has no %s; recreate the pod", pod.ID, p.what)
		}
	}

	ns = append(ns, specs.LinuxNamespace{Type: specs.MountNamespace})

	switch {
	case pod.NetNS != "":
		if err := join(specs.NetworkNamespace, pod.NetNS); err != nil {
			return nil, err
		}
	case !pod.HostNetwork:
		return nil, preconditionf("pod %s has no network namespace and is not host-network; recreate the pod", pod.ID)
	}

	// containerd: a cgroup namespace hides the host's cgroup tree, on
	// cgroup v2 only and not for privileged containers (for compatibility).
	if g.host.cgroupV2() && !sc.Privileged {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return ns, nil
}

// checkUserNS checks that a container's user namespace request is its
// pod's: the pod's namespaces are owned by its user namespace, so its
// containers join it whether they repeat it or not (kubelet always does),
// and a container cannot have one its pod lacks.
func checkUserNS(ctr *UserNamespace, pod Pod) error {
	switch {
	case ctr == nil:
		return nil
	case pod.UserNSMappings == nil:
		return invalidf("namespace_options.userns_options asks for a user namespace, but pod %s is not in one: set it on the pod sandbox", pod.ID)
	case !slices.Equal(ctr.UIDs, pod.UserNSMappings.UIDs) || !slices.Equal(ctr.GIDs, pod.UserNSMappings.GIDs):
		return invalidf("namespace_options.userns_options: the container's ID mappings differ from those of pod %s", pod.ID)
	}
	return nil
}

// specIDMappings converts ID mappings to the OCI spec's.
func specIDMappings(m []IDMapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, 0, len(m))
	for _, r := range m {
		out = append(out, specs.LinuxIDMapping{ContainerID: r.ContainerID, HostID: r.HostID, Size: r.Length})
	}
	return out
}
