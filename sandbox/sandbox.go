package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/berth-runtime/berth/sandbox/ocispec"

	"github.com/berth-runtime/berth/network"
)

// State is a sandbox's lifecycle state.
type State string

const (
	// StateCreating is recorded before any resource is made, so that a
	// RunPodSandbox cut off by a crash is rolled back at the next start.
	StateCreating State = "creating"
	// StateReady: namespaces and network are up.
	StateReady State = "ready"
	// StateNotReady: stopped (network torn down), or found after a reboot.
	StateNotReady State = "notready"
)

// Metadata identifies a pod sandbox as kubelet knows it.
type Metadata struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Attempt   uint32 `json:"attempt"`
}

// Config is what RunPodSandbox asks for, in berth's own terms.
type Config struct {
	Metadata     Metadata              `json:"metadata"`
	Hostname     string                `json:"hostname,omitempty"`
	LogDirectory string                `json:"log_directory,omitempty"`
	DNS          *DNSConfig            `json:"dns,omitempty"`
	PortMappings []network.PortMapping `json:"port_mappings,omitempty"`
	Labels       map[string]string     `json:"labels,omitempty"`
	Annotations  map[string]string     `json:"annotations,omitempty"`
	CgroupParent string                `json:"cgroup_parent,omitempty"`
	HostNetwork  bool                  `json:"host_network,omitempty"`
	HostPID      bool                  `json:"host_pid,omitempty"`
	// SharedPID: one PID namespace for the whole pod (pid: POD), held by
	// a holder process; otherwise each container gets its own.
	SharedPID bool `json:"shared_pid,omitempty"`
	// UserNS, when set, puts the pod in a user namespace of its own with
	// these ID mappings (hostUsers: false); nil keeps the host's users.
	UserNS    *ocispec.UserNamespace `json:"user_ns,omitempty"`
	HostIPC   bool                   `json:"host_ipc,omitempty"`
	Sysctls   map[string]string      `json:"sysctls,omitempty"`
	Resources *Resources             `json:"resources,omitempty"`
	Overhead  *Resources             `json:"overhead,omitempty"`
	// SupplementalGroupsPolicy: "" or "Merge" adds the image's groups of
	// the user to the requested ones; "Strict" uses the requested only.
	SupplementalGroupsPolicy string `json:"supplemental_groups_policy,omitempty"`
	RuntimeHandler           string `json:"runtime_handler,omitempty"`
}

// hash identifies a request: a kubelet retry of a timed-out RunPodSandbox
// sends exactly the same config.
func (c Config) hash() string {
	b, _ := json.Marshal(c) // map keys are sorted: stable
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// reservationKey is the identity kubelet gives a sandbox.
func (m Metadata) reservationKey() string {
	b, _ := json.Marshal(m)
	return string(b)
}

// Sandbox is the persisted record of a pod sandbox.
type Sandbox struct {
	ID        string    `json:"id"`
	Config    Config    `json:"config"`
	CreatedAt time.Time `json:"created_at"`
	State     State     `json:"state"`
	// ConfigHash tells a retry from a conflicting request.
	ConfigHash string `json:"config_hash"`

	// Dir is the sandbox's runtime directory under the state dir.
	Dir string `json:"dir"`
	// NetNS is the pinned network namespace ("" for host network).
	NetNS      string   `json:"netns,omitempty"`
	Namespaces Pinned   `json:"namespaces"`
	Files      PodFiles `json:"files"`
	// IPs are the pod's addresses, primary first.
	IPs    []string    `json:"ips,omitempty"`
	Cgroup CgroupState `json:"cgroup"`
	// PIDHolder holds the pod's PID namespace (pid: POD); nil otherwise.
	PIDHolder *Holder `json:"pid_holder,omitempty"`
	// Monitor is the pod's monitor process, started with the pod (by the
	// first CreateContainer for a pod recorded before that was so).
	Monitor *Monitor `json:"monitor,omitempty"`
}

// clone returns a copy callers may keep.
func (s *Sandbox) clone() Sandbox {
	c := *s
	c.IPs = append([]string(nil), s.IPs...)
	return c
}
