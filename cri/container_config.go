package cri

// Translation of a CRI ContainerConfig into berth's terms (sandbox and
// ocispec types). Checks that need no state happen here; the rest where the
// work is done.

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/berth-runtime/berth/image"
	"github.com/berth-runtime/berth/sandbox"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func toContainerConfig(c *runtimeapi.ContainerConfig, img image.Image) (sandbox.ContainerConfig, error) {
	if len(c.GetCDIDevices()) > 0 {
		return sandbox.ContainerConfig{}, fmt.Errorf("%w: CDI devices are not supported by berth", errdefs.ErrInvalidArgument)
	}
	if c.GetWindows() != nil && c.GetLinux() == nil {
		return sandbox.ContainerConfig{}, fmt.Errorf("%w: berth runs Linux containers only", errdefs.ErrInvalidArgument)
	}
	if _, ok := runtimeapi.Signal_name[int32(c.GetStopSignal())]; !ok {
		return sandbox.ContainerConfig{}, fmt.Errorf("%w: stop_signal %d is not a signal of the CRI", errdefs.ErrInvalidArgument, c.GetStopSignal())
	}
	linux := c.GetLinux()
	sc := linux.GetSecurityContext()
	spec := ocispec.Container{
		Name:        c.GetMetadata().GetName(),
		Command:     c.GetCommand(),
		Args:        c.GetArgs(),
		WorkingDir:  c.GetWorkingDir(),
		Labels:      c.GetLabels(),
		Annotations: c.GetAnnotations(),
		Stdin:       c.GetStdin(),
		StdinOnce:   c.GetStdinOnce(),
		TTY:         c.GetTty(),
		Resources:   toContainerResources(linux.GetResources()),
	}
	for _, kv := range c.GetEnvs() {
		spec.Env = append(spec.Env, ocispec.KeyValue{Key: kv.GetKey(), Value: string(kv.GetValue())})
	}
	for _, mnt := range c.GetMounts() {
		m, err := toMount(mnt)
		if err != nil {
			return sandbox.ContainerConfig{}, err
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	for _, d := range c.GetDevices() {
		spec.Devices = append(spec.Devices, ocispec.Device{
			ContainerPath: d.GetContainerPath(), HostPath: d.GetHostPath(), Permissions: d.GetPermissions(),
		})
	}
	sec, targetID, err := toSecurityContext(sc)
	if err != nil {
		return sandbox.ContainerConfig{}, err
	}
	spec.Security = sec
	cfg := sandbox.ContainerConfig{
		Metadata:      sandbox.ContainerMetadata{Name: c.GetMetadata().GetName(), Attempt: c.GetMetadata().GetAttempt()},
		Image:         toImageInfo(c.GetImage().GetImage(), img),
		LogPath:       c.GetLogPath(),
		Spec:          spec,
		TargetID:      targetID,
		StopSignalArg: stopSignalName(c.GetStopSignal()),
	}
	if sc.GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict {
		cfg.SupplementalGroupsPolicy = "Strict"
	}
	return cfg, nil
}

func toImageInfo(requested string, img image.Image) sandbox.ImageInfo {
	info := sandbox.ImageInfo{Requested: requested, ID: img.ID, Ref: img.ID, Name: requested, Config: img.Config.Config}
	if len(img.RepoTags) > 0 {
		info.Name = img.RepoTags[0]
	}
	if len(img.RepoDigests) > 0 {
		info.Ref = img.RepoDigests[0]
	}
	return info
}

func toContainerResources(r *runtimeapi.LinuxContainerResources) *ocispec.Resources {
	if r == nil {
		return nil
	}
	out := &ocispec.Resources{
		CPUPeriod: r.CpuPeriod, CPUQuota: r.CpuQuota, CPUShares: r.CpuShares,
		MemoryLimit: r.MemoryLimitInBytes, MemorySwapLimit: r.MemorySwapLimitInBytes,
		OOMScoreAdj: r.OomScoreAdj, CPUSetCPUs: r.CpusetCpus, CPUSetMems: r.CpusetMems, Unified: r.Unified,
	}
	for _, h := range r.HugepageLimits {
		if out.HugepageLimits == nil {
			out.HugepageLimits = map[string]uint64{}
		}
		out.HugepageLimits[h.PageSize] = h.Limit
	}
	return out
}

func toMount(m *runtimeapi.Mount) (ocispec.Mount, error) {
	out := ocispec.Mount{
		ContainerPath: m.GetContainerPath(), HostPath: m.GetHostPath(), Readonly: m.GetReadonly(),
		RecursiveReadonly: m.GetRecursiveReadOnly(), SELinuxRelabel: m.GetSelinuxRelabel(),
		Propagation: ocispec.Propagation(m.GetPropagation()),
	}
	if len(m.GetMountOptions()) > 0 {
		return out, fmt.Errorf("%w: mount %s: mount options are not supported by berth", errdefs.ErrInvalidArgument, m.GetContainerPath())
	}
	switch img, sub := m.GetImage().GetImage(), m.GetImageSubPath(); {
	case img != "":
		// An image volume: always read-only, whatever readonly says (the
		// CRI: "All image mounts are per feature definition readonly").
		if m.GetHostPath() != "" {
			return out, fmt.Errorf("%w: mount %s: host_path and image are exclusive: an image volume mounts the image", errdefs.ErrInvalidArgument, m.GetContainerPath())
		}
		if sub != "" && !filepath.IsLocal(sub) {
			return out, fmt.Errorf("%w: mount %s: image_sub_path %q must be a relative path inside the image, without \"..\"", errdefs.ErrInvalidArgument, m.GetContainerPath(), sub)
		}
		out.Image, out.ImageSubPath, out.Readonly = img, sub, true
	case m.GetImage() != nil && m.GetHostPath() == "":
		return out, fmt.Errorf("%w: mount %s: image volume without image.image", errdefs.ErrInvalidArgument, m.GetContainerPath())
	case sub != "":
		return out, fmt.Errorf("%w: mount %s: image_sub_path is only for image volumes (set image)", errdefs.ErrInvalidArgument, m.GetContainerPath())
	}
	for _, id := range m.GetUidMappings() {
		out.UIDMappings = append(out.UIDMappings, ocispec.IDMapping{ContainerID: id.ContainerId, HostID: id.HostId, Length: id.Length})
	}
	for _, id := range m.GetGidMappings() {
		out.GIDMappings = append(out.GIDMappings, ocispec.IDMapping{ContainerID: id.ContainerId, HostID: id.HostId, Length: id.Length})
	}
	return out, nil
}

// toSecurityContext returns the security context and, for pid: TARGET, the
// target container's ID.
func toSecurityContext(sc *runtimeapi.LinuxContainerSecurityContext) (ocispec.SecurityContext, string, error) {
	ns := sc.GetNamespaceOptions()
	out := ocispec.SecurityContext{
		Privileged:             sc.GetPrivileged(),
		AddCapabilities:        sc.GetCapabilities().GetAddCapabilities(),
		DropCapabilities:       sc.GetCapabilities().GetDropCapabilities(),
		AddAmbientCapabilities: sc.GetCapabilities().GetAddAmbientCapabilities(),
		RunAsUsername:          sc.GetRunAsUsername(),
		SupplementalGroups:     sc.GetSupplementalGroups(),
		ReadonlyRootfs:         sc.GetReadonlyRootfs(),
		NoNewPrivs:             sc.GetNoNewPrivs(),
		MaskedPaths:            sc.GetMaskedPaths(),
		ReadonlyPaths:          sc.GetReadonlyPaths(),
		NetworkNS:              ocispec.NamespaceMode(ns.GetNetwork()),
		PIDNS:                  ocispec.NamespaceMode(ns.GetPid()),
		IPCNS:                  ocispec.NamespaceMode(ns.GetIpc()),
	}
	if u := sc.GetRunAsUser(); u != nil {
		v := u.Value
		out.RunAsUser = &v
	}
	if g := sc.GetRunAsGroup(); g != nil {
		v := g.Value
		out.RunAsGroup = &v
	}
	var err error
	if out.Seccomp, err = toProfile("seccomp", sc.GetSeccomp(), sc.GetSeccompProfilePath()); err != nil {
		return out, "", err
	}
	if out.AppArmor, err = toProfile("apparmor", sc.GetApparmor(), sc.GetApparmorProfile()); err != nil {
		return out, "", err
	}
	if out.UserNS, err = toUserNS(ns.GetUsernsOptions()); err != nil {
		return out, "", err
	}
	target := ""
	if ns.GetPid() == runtimeapi.NamespaceMode_TARGET {
		target = ns.GetTargetId()
		if target == "" {
			return out, "", fmt.Errorf("%w: pid namespace mode TARGET needs target_id", errdefs.ErrInvalidArgument)
		}
	}
	return out, target, nil
}

// toProfile reads a SecurityProfile, or the deprecated profile string
// ("runtime/default", "docker/default", "unconfined", "localhost/<ref>").
func toProfile(kind string, p *runtimeapi.SecurityProfile, legacy string) (*ocispec.Profile, error) {
	if p != nil {
		out := &ocispec.Profile{Type: ocispec.ProfileType(p.ProfileType), LocalhostRef: p.LocalhostRef}
		if out.Type == ocispec.ProfileLocalhost && out.LocalhostRef == "" {
			return nil, fmt.Errorf("%w: a Localhost %s profile needs localhost_ref", errdefs.ErrInvalidArgument, kind)
		}
		return out, nil
	}
	switch {
	case legacy == "":
		return nil, nil
	case legacy == "runtime/default" || legacy == "docker/default":
		return &ocispec.Profile{Type: ocispec.ProfileRuntimeDefault}, nil
	case legacy == "unconfined":
		return &ocispec.Profile{Type: ocispec.ProfileUnconfined}, nil
	case strings.HasPrefix(legacy, "localhost/"):
		return &ocispec.Profile{Type: ocispec.ProfileLocalhost, LocalhostRef: strings.TrimPrefix(legacy, "localhost/")}, nil
	}
	return nil, fmt.Errorf("%w: unknown %s profile %q (want runtime/default, unconfined or localhost/<path>)", errdefs.ErrInvalidArgument, kind, legacy)
}

// stopSignalName turns the CRI's signal enum into a signal name, "" for
// the runtime default (the image's STOPSIGNAL). The CRI spells SIGRTMIN+n
// and SIGRTMAX-n as SIGRTMINPLUSn and SIGRTMAXMINUSn.
func stopSignalName(s runtimeapi.Signal) string {
	if s == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return ""
	}
	name := strings.TrimPrefix(s.String(), "SIGNAL_")
	return strings.NewReplacer("SIGRTMINPLUS", "SIGRTMIN+", "SIGRTMAXMINUS", "SIGRTMAX-").Replace(name)
}
