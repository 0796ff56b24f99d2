package network

import (
	"fmt"
	"math"
	"net/netip"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// Attachment is one pod's attachment to the pod network: what CNI ADD and
// DEL need to know. Teardown is given the same Attachment as Setup; it
// prefers what libcni cached at ADD time but falls back to these fields when
// that cache is gone.
type Attachment struct {
	PodID        string // the sandbox ID: CNI's container ID
	PodName      string
	PodNamespace string
	PodUID       string
	// NetNSPath is the pinned namespace (see CreateNetNS).
	NetNSPath    string
	PortMappings []PortMapping
	// IngressBandwidth and EgressBandwidth are Kubernetes quantities in
	// bits per second, from the kubernetes.io/ingress-bandwidth and
	// kubernetes.io/egress-bandwidth pod annotations; "" means no limit.
	IngressBandwidth string
	EgressBandwidth  string
	// PodCIDRs are the node's pod CIDRs (one per IP family) for IPAM
	// plugins that take them as the ipRanges capability.
	PodCIDRs []netip.Prefix
	DNS      *DNS
}

// PortMapping is a host port forwarded to the pod. Entries with HostPort 0
// are not forwarded (a containerPort alone needs no mapping).
type PortMapping struct {
	HostPort      int32  `json:"host_port"`
	ContainerPort int32  `json:"container_port"`
	Protocol      string `json:"protocol"` // tcp, udp or sctp; "" is tcp
	HostIP        string `json:"host_ip,omitempty"`
}

// DNS is the pod's resolver config, for plugins with the dns capability.
type DNS struct {
	Servers  []string
	Searches []string
	Options  []string
}

// The interface every pod gets from the pod network. Loopback is not part of
// the network list: every plugin of a list gets the same IfName.
const podIfName = "eth0"

// cniPortMapping is the portMappings capability's element, as CNI's
// conventions document and the portmap plugin parse it.
type cniPortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

type cniBandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

type cniIPRange struct {
	Subnet string `json:"subnet"`
}

type cniDNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// Kubernetes does not let a pod choose its burst, and the bandwidth plugin
// insists on one with every rate; containerd and kubelet's old kubenet pass
// this same fixed value (bits), so pods shape the same on Berth.
const bandwidthBurst = math.MaxUint32

// validate checks the parts of an Attachment that Setup and Teardown rely on.
// PodID ends up in file names (libcni's cache, host-local's store).
func (a *Attachment) validate() error {
	if a.PodID == "" || strings.ContainsAny(a.PodID, "/\x00") || a.PodID == "." || a.PodID == ".." {
		return fmt.Errorf("%w: pod ID %q is not usable as a CNI container ID", errdefs.ErrInvalidArgument, a.PodID)
	}
	return nil
}

// hostPorts returns the port mappings that forward a host port, in CNI's
// form, validated.
func (a *Attachment) hostPorts() ([]cniPortMapping, error) {
	var out []cniPortMapping
	for _, p := range a.PortMappings {
		if p.HostPort == 0 {
			continue
		}
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		switch {
		case p.HostPort < 0 || p.HostPort > 65535 || p.ContainerPort <= 0 || p.ContainerPort > 65535:
			return nil, fmt.Errorf("%w: port mapping %d->%d is out of range 1-65535", errdefs.ErrInvalidArgument, p.HostPort, p.ContainerPort)
		case proto != "tcp" && proto != "udp" && proto != "sctp":
			return nil, fmt.Errorf("%w: port mapping %d->%d: protocol %q is not tcp, udp or sctp", errdefs.ErrInvalidArgument, p.HostPort, p.ContainerPort, p.Protocol)
		}
		if p.HostIP != "" {
			if _, err := netip.ParseAddr(p.HostIP); err != nil {
				return nil, fmt.Errorf("%w: port mapping %d->%d: host IP %q is not an IP address", errdefs.ErrInvalidArgument, p.HostPort, p.ContainerPort, p.HostIP)
			}
		}
		out = append(out, cniPortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
	}
	return out, nil
}

// capabilityArgs builds the runtimeConfig values libcni hands to the plugins
// that declare the matching capability. Keys are present only when the pod
// asks for something, so a plugin never sees an empty capability it might
// misread as "remove everything".
func (a *Attachment) capabilityArgs() (map[string]any, error) {
	args := map[string]any{}
	ports, err := a.hostPorts()
	if err != nil {
		return nil, err
	}
	if len(ports) > 0 {
		args["portMappings"] = ports
	}

	var bw cniBandwidth
	if a.IngressBandwidth != "" {
		rate, err := parseBandwidth(a.IngressBandwidth)
		if err != nil {
			return nil, fmt.Errorf("%w: ingress bandwidth: %v", errdefs.ErrInvalidArgument, err)
		}
		bw.IngressRate, bw.IngressBurst = rate, bandwidthBurst
	}
	if a.EgressBandwidth != "" {
		rate, err := parseBandwidth(a.EgressBandwidth)
		if err != nil {
			return nil, fmt.Errorf("%w: egress bandwidth: %v", errdefs.ErrInvalidArgument, err)
		}
		bw.EgressRate, bw.EgressBurst = rate, bandwidthBurst
	}
	if bw != (cniBandwidth{}) {
		args["bandwidth"] = bw
	}

	if len(a.PodCIDRs) > 0 {
		// One range set per CIDR: host-local then gives the pod one
		// address of each family.
		sets := make([][]cniIPRange, 0, len(a.PodCIDRs))
		for _, c := range a.PodCIDRs {
			sets = append(sets, []cniIPRange{{Subnet: c.Masked().String()}})
		}
		args["ipRanges"] = sets
	}

	if d := a.DNS; d != nil && (len(d.Servers)+len(d.Searches)+len(d.Options) > 0) {
		args["dns"] = cniDNS{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	return args, nil
}

// cniArgs are kubelet's conventional CNI_ARGS. IgnoreUnknown=1 keeps plugins
// that do not know them from failing.
func (a *Attachment) cniArgs() [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", a.PodNamespace},
		{"K8S_POD_NAME", a.PodName},
		{"K8S_POD_INFRA_CONTAINER_ID", a.PodID},
		{"K8S_POD_UID", a.PodUID},
	}
}

// runtimeConf is the libcni invocation for this pod.
func (a *Attachment) runtimeConf(netnsPath string, capArgs map[string]any) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID:    a.PodID,
		NetNS:          netnsPath,
		IfName:         podIfName,
		Args:           a.cniArgs(),
		CapabilityArgs: capArgs,
	}
}
