package sandbox

import (
	"strconv"
	"time"

	"github.com/berth-runtime/berth/sandbox/ocispec"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerState is a container's lifecycle state, as the CRI names them.
type ContainerState string

const (
	// ContainerCreating is recorded before anything is made, so that a
	// CreateContainer cut off by a crash is rolled back at the next start.
	// Such a container is never listed.
	ContainerCreating ContainerState = "creating"
	ContainerCreated  ContainerState = "created"
	ContainerRunning  ContainerState = "running"
	ContainerExited   ContainerState = "exited"
	// ContainerUnknown: berth cannot tell (its monitor is unreachable).
	ContainerUnknown ContainerState = "unknown"
)

// Exit reasons, as containerd and kubelet name them.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
)

// ContainerMetadata identifies a container within its pod, as kubelet does.
type ContainerMetadata struct {
	Name    string `json:"name"`
	Attempt uint32 `json:"attempt"`
}

// ImageInfo is the image a container was created from.
type ImageInfo struct {
	// Requested is the image as the CreateContainer request named it.
	Requested string `json:"requested"`
	// ID is the image's config digest; Ref its repo digest (or the ID).
	ID  string `json:"id"`
	Ref string `json:"ref"`
	// Name is a tag of the image if it has one (for ContainerStatus.image).
	Name string `json:"name,omitempty"`
	// Config is the image's runtime config (entrypoint, env, user, ...).
	Config imagespec.ImageConfig `json:"config"`
}

// ContainerConfig is what CreateContainer asks for, in berth's terms.
type ContainerConfig struct {
	Metadata ContainerMetadata `json:"metadata"`
	Image    ImageInfo         `json:"image"`
	// LogPath is relative to the sandbox's log directory ("" = no log).
	LogPath string            `json:"log_path,omitempty"`
	Spec    ocispec.Container `json:"spec"`
	// TargetID is the container whose PID namespace a pid: TARGET
	// container joins.
	TargetID string `json:"target_id,omitempty"`
	// StopSignalArg overrides the image's STOPSIGNAL ("" keeps it).
	StopSignalArg string `json:"stop_signal,omitempty"`
	// SupplementalGroupsPolicy of the container, overriding the pod's.
	SupplementalGroupsPolicy string `json:"supplemental_groups_policy,omitempty"`
}

// Container is the persisted record of a container.
type Container struct {
	ID        string          `json:"id"`
	SandboxID string          `json:"sandbox_id"`
	Config    ContainerConfig `json:"config"`
	State     ContainerState  `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	// FinishedAt, ExitCode, Reason and Message are set once exited.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExitCode   int32     `json:"exit_code,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	Pid        int       `json:"pid,omitempty"`

	// Dir is the container's bundle (config.json, rootfs mount point,
	// exit.json) under the state dir.
	Dir string `json:"dir"`
	// LogPath is the absolute log path ("" when the pod has no log dir).
	LogPath string `json:"log_path,omitempty"`
	// Cgroup locates the container's cgroup for stats.
	Cgroup CgroupState `json:"cgroup"`
	// CgroupsPath is the spec's cgroupsPath (driver syntax).
	CgroupsPath string `json:"cgroups_path"`
	// Resources are the limits in force (as created, then as updated).
	Resources *specs.LinuxResources `json:"resources,omitempty"`
	// The resolved process user.
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGIDs []uint32 `json:"additional_gids,omitempty"`
	Username       string   `json:"username,omitempty"`
	// StopSignal is the image's STOPSIGNAL (default SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	// Mounts as created (host paths resolved), for ContainerStatus. An
	// image volume's host path is its read-only view of the image (or the
	// image_sub_path in it) under Dir.
	Mounts []ocispec.Mount `json:"mounts,omitempty"`
	// Volumes are the image's VOLUMEs, bound from directories under
	// <root>/volumes/<id> (not reported by ContainerStatus, as under
	// containerd).
	Volumes []ocispec.Mount `json:"volumes,omitempty"`
}

func (c *Container) recordID() string { return c.ID }

// clone returns a copy callers may keep.
func (c *Container) clone() Container {
	out := *c
	out.AdditionalGIDs = append([]uint32(nil), c.AdditionalGIDs...)
	out.Mounts = append([]ocispec.Mount(nil), c.Mounts...)
	out.Volumes = append([]ocispec.Mount(nil), c.Volumes...)
	return out
}

// nameKey is kubelet's identity of a container: one name per pod attempt,
// as containerd reserves it.
func nameKey(sb *Sandbox, md ContainerMetadata) string {
	p := sb.Config.Metadata
	return md.Name + "_" + p.Name + "_" + p.Namespace + "_" + p.UID + "_" + strconv.FormatUint(uint64(md.Attempt), 10)
}
