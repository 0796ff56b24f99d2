package cri

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RunPodSandbox creates the pod's namespaces, network, files and cgroup.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg, err := toSandboxConfig(req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	sb, err := s.sandboxes.Run(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}

func toSandboxConfig(c *runtimeapi.PodSandboxConfig, handler string) (sandbox.Config, error) {
	if c == nil || c.Metadata == nil {
		return sandbox.Config{}, fmt.Errorf("%w: RunPodSandbox needs config.metadata (name, namespace, uid)", errdefs.ErrInvalidArgument)
	}
	nsOpts := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	cfg := sandbox.Config{
		Metadata: sandbox.Metadata{
			Name: c.Metadata.Name, Namespace: c.Metadata.Namespace, UID: c.Metadata.Uid, Attempt: c.Metadata.Attempt,
		},
		Hostname:       c.Hostname,
		LogDirectory:   c.LogDirectory,
		Labels:         c.Labels,
		Annotations:    c.Annotations,
		CgroupParent:   c.GetLinux().GetCgroupParent(),
		HostNetwork:    nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE,
		HostPID:        nsOpts.GetPid() == runtimeapi.NamespaceMode_NODE,
		SharedPID:      nsOpts.GetPid() == runtimeapi.NamespaceMode_POD,
		HostIPC:        nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE,
		Sysctls:        c.GetLinux().GetSysctls(),
		Resources:      toResources(c.GetLinux().GetResources()),
		Overhead:       toResources(c.GetLinux().GetOverhead()),
		RuntimeHandler: handler,
	}
	userNS, err := toUserNS(nsOpts.GetUsernsOptions())
	if err != nil {
		return cfg, err
	}
	if userNS != nil && (cfg.HostNetwork || cfg.HostPID || cfg.HostIPC) {
		return cfg, fmt.Errorf("%w: a pod in a user namespace (hostUsers: false) cannot use the host's network, PID or IPC namespace", errdefs.ErrInvalidArgument)
	}
	cfg.UserNS = userNS
	if c.GetLinux().GetSecurityContext().GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict {
		cfg.SupplementalGroupsPolicy = "Strict"
	}
	if d := c.DnsConfig; d != nil {
		cfg.DNS = &sandbox.DNSConfig{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	for _, pm := range c.PortMappings {
		if pm.HostPort <= 0 {
			continue // a containerPort without hostPort needs no mapping
		}
		if pm.HostPort > 65535 || pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return cfg, fmt.Errorf("%w: port mapping %d->%d is out of range", errdefs.ErrInvalidArgument, pm.HostPort, pm.ContainerPort)
		}
		if _, ok := runtimeapi.Protocol_name[int32(pm.Protocol)]; !ok {
			return cfg, fmt.Errorf("%w: port mapping %d->%d: unknown protocol %d (want TCP, UDP or SCTP)", errdefs.ErrInvalidArgument, pm.HostPort, pm.ContainerPort, pm.Protocol)
		}
		if _, err := netip.ParseAddr(pm.HostIp); pm.HostIp != "" && err != nil {
			return cfg, fmt.Errorf("%w: port mapping %d->%d: host_ip %q is not an IP address", errdefs.ErrInvalidArgument, pm.HostPort, pm.ContainerPort, pm.HostIp)
		}
		cfg.PortMappings = append(cfg.PortMappings, network.PortMapping{
			HostPort: pm.HostPort, ContainerPort: pm.ContainerPort,
			Protocol: strings.ToLower(pm.Protocol.String()), HostIP: pm.HostIp,
		})
	}
	return cfg, nil
}

func toResources(r *runtimeapi.LinuxContainerResources) *sandbox.Resources {
	if r == nil {
		return nil
	}
	out := &sandbox.Resources{
		CPUPeriod:       r.CpuPeriod,
		CPUQuota:        r.CpuQuota,
		CPUShares:       r.CpuShares,
		MemoryLimit:     r.MemoryLimitInBytes,
		MemorySwapLimit: r.MemorySwapLimitInBytes,
		CPUSetCPUs:      r.CpusetCpus,
		CPUSetMems:      r.CpusetMems,
		Unified:         r.Unified,
	}
	for _, h := range r.HugepageLimits {
		if out.HugepageLimits == nil {
			out.HugepageLimits = map[string]uint64{}
		}
		out.HugepageLimits[h.PageSize] = h.Limit
	}
	return out
}

// toUserNS translates the CRI's user namespace option: NODE (the default)
// is the host's users (nil); POD a namespace of the pod's with the given
// mappings. CONTAINER and TARGET are not defined for user namespaces.
func toUserNS(u *runtimeapi.UserNamespace) (*ocispec.UserNamespace, error) {
	if u == nil { // not POD, whatever GetMode's zero value says
		return nil, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return nil, fmt.Errorf("%w: userns_options: mode NODE takes no ID mappings", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, fmt.Errorf("%w: userns_options: mode %s is not supported for user namespaces: use POD or NODE", errdefs.ErrInvalidArgument, u.GetMode())
	}
	out := &ocispec.UserNamespace{}
	for _, id := range u.GetUids() {
		out.UIDs = append(out.UIDs, ocispec.IDMapping{ContainerID: id.ContainerId, HostID: id.HostId, Length: id.Length})
	}
	for _, id := range u.GetGids() {
		out.GIDs = append(out.GIDs, ocispec.IDMapping{ContainerID: id.ContainerId, HostID: id.HostId, Length: id.Length})
	}
	if err := sandbox.ValidateUserNamespace(out); err != nil {
		return nil, err
	}
	return out, nil
}
