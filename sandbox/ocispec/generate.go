package ocispec

import (
	"maps"
	"os"
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Result is a generated spec and what Generate resolved on the way.
//
// Spec.Linux.Seccomp of a RuntimeDefault container is shared with every
// other spec the Generator made for the same capabilities: treat it as
// read-only (encoding it is fine; modifying it is not).
type Result struct {
	Spec *specs.Spec
	// UID and GID are the process's user and primary group.
	UID, GID uint32
	// AdditionalGIDs are its supplementary groups (sorted, deduplicated).
	AdditionalGIDs []uint32
	// Username is the user's name when known (a name that was asked for or
	// the image's /etc/passwd entry of the UID).
	Username string
	// StopSignal is the image's STOPSIGNAL ("SIGTERM" when it has none),
	// checked and written "SIG<NAME>" (or a number for an unnamed signal).
	StopSignal string
}

// Generator builds specs. It is safe for concurrent use and caches what is
// expensive or cannot change while berth runs: containerd's default spec,
// what the host supports, and the RuntimeDefault seccomp profile per
// capability set.
type Generator struct {
	defaults Defaults
	host     host
	template func() (*template, error)

	mu sync.Mutex
	// seccompDefault maps a bounding set (see capsKey) to its profile.
	seccompDefault map[string]*specs.LinuxSeccomp
	// seccompBuilds counts profiles built (tests check the cache with it).
	seccompBuilds int

	appArmorMu sync.Mutex
	// appArmorLoaded is set once berth's default profile is loaded.
	appArmorLoaded bool
}

// NewGenerator returns a Generator with the node's defaults. They apply to
// every Generate; Input.Defaults is not consulted.
func NewGenerator(d Defaults) *Generator {
	return &Generator{
		defaults:       d,
		host:           realHost(),
		template:       sync.OnceValues(newTemplate),
		seccompDefault: map[string]*specs.LinuxSeccomp{},
	}
}

// Generate returns the spec for in, or an error wrapping an errdefs class:
// ErrInvalidArgument for a bad request, ErrNotFound for something missing
// on the host, ErrFailedPrecondition for something the host lacks,
// ErrNotImplemented for what berth does not support yet.
//
// The steps run in containerd's order where it matters: the capabilities
// are final before the RuntimeDefault seccomp profile is chosen for them.
func (g *Generator) Generate(in Input) (*Result, error) {
	t, err := g.template()
	if err != nil {
		return nil, err
	}
	sc := &in.Container.Security
	if err := checkUserNS(sc.UserNS, in.Pod); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(in.Rootfs) {
		return nil, invalidf("rootfs %q must be an absolute path", in.Rootfs)
	}
	if st, err := os.Stat(in.Rootfs); err != nil || !st.IsDir() {
		return nil, notFoundf("rootfs %q is not a directory: mount the container's rootfs first", in.Rootfs)
	}
	// Left unset as in containerd's spec for a CRI container: rlimits
	// (containerd drops its defaults, so the process inherits berth's),
	// SELinux labels (no SELinux here; mounts' selinux_relabel is ignored),
	// hooks, and the hostname (below).
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: in.Rootfs, Readonly: sc.ReadonlyRootfs},
		Process: &specs.Process{Terminal: in.Container.TTY, NoNewPrivileges: sc.NoNewPrivs},
		// No hostname: the container joins the pod's UTS namespace (which
		// has it) or the host's, and libcontainer refuses to set one
		// without a UTS namespace of its own.
		Linux: &specs.Linux{CgroupsPath: in.CgroupsPath},
	}
	res := &Result{Spec: s}

	if err := g.process(in, s.Process, res); err != nil {
		return nil, err
	}
	if err := g.user(in, s.Process, res); err != nil {
		return nil, err
	}
	if s.Process.Capabilities, err = g.capabilities(t, sc); err != nil {
		return nil, err
	}
	if s.Linux.Namespaces, err = g.namespaces(in); err != nil {
		return nil, err
	}
	if u := in.Pod.UserNSMappings; u != nil {
		s.Linux.UIDMappings, s.Linux.GIDMappings = specIDMappings(u.UIDs), specIDMappings(u.GIDs)
	}
	if err := g.mounts(t, in, s); err != nil {
		return nil, err
	}
	if s.Linux.Resources, s.Process.OOMScoreAdj, err = g.resources(in.Container.Resources); err != nil {
		return nil, err
	}
	if err := g.devices(in.Container, s.Linux); err != nil {
		return nil, err
	}
	s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = maskedPaths(t, sc)
	if s.Process.ApparmorProfile, err = g.appArmor(sc); err != nil {
		return nil, err
	}
	if s.Linux.Seccomp, err = g.seccomp(sc, s.Process.Capabilities); err != nil {
		return nil, err
	}
	if len(in.Pod.Sysctls) > 0 {
		s.Linux.Sysctl = maps.Clone(in.Pod.Sysctls)
	}
	s.Annotations = annotations(in)
	return res, nil
}

// The annotations containerd's CRI plugin puts on a container's spec
// (internal/cri/annotations): runtimes and tools such as gVisor, Kata and
// NRI plugins read them.
const (
	annotationContainerType    = "io.kubernetes.cri.container-type"
	annotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	annotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	annotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	annotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	annotationContainerName    = "io.kubernetes.cri.container-name"
	annotationImageName        = "io.kubernetes.cri.image-name"
	containerTypeContainer     = "container"
)

// annotations are the container's own annotations, then containerd's. Unlike
// containerd, which passes only the annotations a runtime handler lists
// (container_annotations), all of the container's are kept, as CRI-O does.
// The pod-metadata ones and the image name are left out when unknown
// rather than set empty.
func annotations(in Input) map[string]string {
	a := maps.Clone(in.Container.Annotations)
	if a == nil {
		a = map[string]string{}
	}
	a[annotationContainerType] = containerTypeContainer
	a[annotationSandboxID] = in.Pod.ID
	a[annotationContainerName] = in.Container.Name
	for k, v := range map[string]string{
		annotationSandboxNamespace: in.Pod.Namespace,
		annotationSandboxUID:       in.Pod.UID,
		annotationSandboxName:      in.Pod.Name,
		annotationImageName:        in.ImageName,
	} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}
