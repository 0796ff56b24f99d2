// Package ocispec builds a container's OCI runtime spec from what the CRI
// asked for, the image's config and the pod sandbox it joins, the way
// containerd's CRI plugin and CRI-O do, so that a container behaves the same
// under berth as under them (user, groups, capabilities, mounts, env, ...).
//
// It does no I/O except reading the image's /etc/passwd and /etc/group (and
// resolving container paths) inside the already mounted rootfs, stat'ing
// host paths of mounts and devices, and reading Localhost seccomp profiles.
package ocispec

import (
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Input is everything Generate needs.
type Input struct {
	// ID is the container's ID.
	ID string
	// Rootfs is the absolute path where the container's rootfs is mounted.
	Rootfs    string
	Container Container
	// Image is the image's config (entrypoint, cmd, env, user, ...).
	Image imagespec.ImageConfig
	Pod   Pod
	// CgroupsPath is the container's cgroup (cgroupfs: "/parent/pod/ctr",
	// systemd: "slice:prefix:name"); the caller chose it.
	CgroupsPath string
	// Defaults are node-level settings from berth's config. Generate does
	// not read them: it uses the Defaults given to NewGenerator.
	Defaults Defaults
	// ImageName is the image as the user named it (for the
	// io.kubernetes.cri.image-name annotation); "" leaves it out.
	ImageName string
	// Volumes are the image's VOLUMEs that no CRI mount covers, as host
	// directories the caller made (containerd's volumeMounts): bind-mounted
	// read-write like the pod's files.
	Volumes []Mount
}

// Defaults are the runtime's node-wide settings.
type Defaults struct {
	// PidsLimit is the pids.max of a container whose CRI config has none;
	// 0 or less means unlimited.
	PidsLimit int64
	// SeccompProfileRoot is where Localhost seccomp profiles may live; a
	// relative localhost_ref is resolved against it. Empty: absolute only.
	SeccompProfileRoot string
	// AppArmorEnabled: the kernel has AppArmor (else a profile other than
	// unconfined/runtime-default is an error).
	AppArmorEnabled bool
	// ClampOOMScoreAdj adjusts a container's oom_score_adj to what the
	// kernel lets berth set (it cannot lower it below its own without
	// CAP_SYS_RESOURCE; containerd's restrict_oom_score_adj). nil: as asked.
	ClampOOMScoreAdj func(int) int
}

// Pod is what a container takes from its sandbox.
type Pod struct {
	ID string
	// Name, Namespace and UID are the pod's metadata (for containerd's
	// io.kubernetes.cri.sandbox-* annotations); "" leaves them out.
	Name, Namespace, UID string
	Hostname             string
	// Files the container gets bind-mounted, "" when the pod has none
	// (e.g. resolv.conf of a host-network pod without DNS config is the
	// host's own, and is still given here).
	HostnameFile, ResolvConf, Hosts string
	// Shm is the pod's /dev/shm tmpfs ("" with host IPC: /dev/shm of the host
	// is then bind-mounted, as containerd does).
	Shm string
	// Namespace pins to join; "" means the host's (host network / IPC) or,
	// for PIDNS, none shared (each container gets its own unless NODE).
	NetNS, IPCNS, UTSNS, PIDNS    string
	HostNetwork, HostIPC, HostPID bool
	// UserNS is the pin of the pod's user namespace, which owns its other
	// namespaces, and UserNSMappings its ID mappings; "" and nil for a pod
	// in the host's.
	UserNS         string
	UserNSMappings *UserNamespace
	// Sysctls are the pod's sysctls that belong to a namespace the
	// container creates itself (none today: the pod's namespaces are
	// pinned and got them at sandbox creation). Kept for completeness.
	Sysctls map[string]string
	// SupplementalGroupsPolicy of the pod: "" or "Merge" (image groups of
	// the user plus SupplementalGroups) or "Strict" (only the requested).
	SupplementalGroupsPolicy string
}

// Container is the CRI ContainerConfig, in berth's terms.
type Container struct {
	Name        string
	Command     []string
	Args        []string
	WorkingDir  string
	Env         []KeyValue
	Mounts      []Mount
	Devices     []Device
	Labels      map[string]string
	Annotations map[string]string
	Stdin       bool
	StdinOnce   bool
	TTY         bool
	Resources   *Resources
	Security    SecurityContext
	// CDIDevices are refused (not supported) by the caller.
}

// KeyValue is one environment variable.
type KeyValue struct{ Key, Value string }

// Propagation of a bind mount, as the CRI names it.
type Propagation int

// Propagation modes (values as in the CRI's MountPropagation).
const (
	PropagationPrivate     Propagation = 0
	PropagationHostToCtr   Propagation = 1 // rslave
	PropagationBidirection Propagation = 2 // rshared
)

// Mount is a CRI mount.
type Mount struct {
	ContainerPath string
	HostPath      string
	Readonly      bool
	// RecursiveReadonly makes every submount read-only too (mount_setattr
	// MOUNT_ATTR_RDONLY with AT_RECURSIVE; runc's "rro" option). Requires
	// Readonly and private propagation.
	RecursiveReadonly bool
	SELinuxRelabel    bool
	Propagation       Propagation
	UIDMappings       []IDMapping
	GIDMappings       []IDMapping
	// Image, when set, names an image whose rootfs is mounted (an image
	// volume, always read-only): the image as the CRI named it. The caller
	// mounts a read-only view of the image and sets HostPath to it (or to
	// ImageSubPath inside it) before Generate.
	Image string
	// ImageID is the ID of Image, resolved when the container was created.
	ImageID string
	// ImageSubPath is the directory of the image mounted instead of its
	// root ("" for the root).
	ImageSubPath string
}

// IDMapping maps a range of IDs.
type IDMapping struct {
	ContainerID uint32 `json:"container_id"`
	HostID      uint32 `json:"host_id"`
	Length      uint32 `json:"length"`
}

// Device is a host device made available in the container.
type Device struct {
	ContainerPath, HostPath string
	// Permissions: any of "r", "w", "m"; empty means "rwm".
	Permissions string
}

// Resources are the CRI LinuxContainerResources. Zero means unset.
type Resources struct {
	CPUPeriod, CPUQuota, CPUShares int64
	MemoryLimit                    int64
	// MemorySwapLimit is memory+swap, as in the CRI.
	MemorySwapLimit        int64
	OOMScoreAdj            int64
	CPUSetCPUs, CPUSetMems string
	// HugepageLimits maps a page size ("2MB", "1GB") to bytes.
	HugepageLimits map[string]uint64
	// Unified holds raw cgroup v2 files.
	Unified map[string]string
}

// NamespaceMode as the CRI names it.
type NamespaceMode int

// Namespace modes (values as in the CRI's NamespaceMode).
const (
	NamespacePod       NamespaceMode = 0
	NamespaceContainer NamespaceMode = 1
	NamespaceNode      NamespaceMode = 2
	NamespaceTarget    NamespaceMode = 3
)

// ProfileType of a seccomp or AppArmor profile (values as in the CRI's
// SecurityProfile.ProfileType).
type ProfileType int

// Profile types.
const (
	ProfileRuntimeDefault ProfileType = 0
	ProfileUnconfined     ProfileType = 1
	ProfileLocalhost      ProfileType = 2
)

// Profile is a seccomp or AppArmor profile choice. A nil *Profile means
// "not set": seccomp then is Unconfined (as kubelet's default is
// RuntimeDefault only when asked), AppArmor the runtime default when enabled.
type Profile struct {
	Type ProfileType
	// LocalhostRef is the profile's path (seccomp) or name (AppArmor).
	LocalhostRef string
}

// SecurityContext is the CRI LinuxContainerSecurityContext.
type SecurityContext struct {
	Privileged bool
	// Capabilities to add and drop; "ALL" means all of them. Names may
	// come with or without the "CAP_" prefix.
	AddCapabilities, DropCapabilities, AddAmbientCapabilities []string
	RunAsUser, RunAsGroup                                     *int64
	RunAsUsername                                             string
	SupplementalGroups                                        []int64
	ReadonlyRootfs                                            bool
	NoNewPrivs                                                bool
	// MaskedPaths and ReadonlyPaths: nil means the runtime defaults.
	MaskedPaths, ReadonlyPaths []string
	Seccomp                    *Profile
	AppArmor                   *Profile
	// Namespaces: Network and IPC are POD or NODE; PID is POD, CONTAINER,
	// NODE or TARGET (TargetPIDNS then is the target's PID namespace path).
	NetworkNS, PIDNS, IPCNS NamespaceMode
	TargetPIDNS             string
	// UserNS, when non-nil, asks for a user namespace with these mappings.
	UserNS *UserNamespace
}

// UserNamespace is the CRI UserNamespace with mode POD.
type UserNamespace struct {
	UIDs []IDMapping `json:"uids"`
	GIDs []IDMapping `json:"gids"`
}
