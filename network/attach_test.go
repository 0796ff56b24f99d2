package network

import (
	"encoding/json"
	"math"
	"net/netip"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseBandwidth(t *testing.T) {
	good := map[string]uint64{
		"10M":    10_000_000,
		"1k":     1_000,
		"1Ki":    1_024,
		"1.5M":   1_500_000,
		"2Gi":    2 << 30,
		"1e6":    1_000_000,
		"1E3":    1_000,
		"+5M":    5_000_000,
		".5M":    500_000,
		"1000":   1_000,
		"1000.1": 1_001, // rounded up, as Kubernetes does
		"1P":     1_000_000_000_000_000,
	}
	for in, want := range good {
		if got, err := parseBandwidth(in); err != nil || got != want {
			t.Errorf("parseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "10X", "10 M", "-10M", "10MB", "1.2.3M", "999", "1500m", "2P", "1e", "1e99", "10mi", "ten"} {
		if got, err := parseBandwidth(in); err == nil {
			t.Errorf("parseBandwidth(%q) = %d, want an error", in, got)
		}
	}
}

func TestCapabilityArgs(t *testing.T) {
	a := Attachment{
		PodID: "p1",
		PortMappings: []PortMapping{
			{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
			{ContainerPort: 9090}, // no host port: not a mapping
			{HostPort: 53, ContainerPort: 5353, Protocol: "udp", HostIP: "127.0.0.1"},
			{HostPort: 3868, ContainerPort: 3868, Protocol: ""}, // "" is tcp
		},
		IngressBandwidth: "10M",
		PodCIDRs:         []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
		DNS:              &DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}, Options: []string{"ndots:5"}},
	}
	args, err := a.capabilityArgs()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(args)
	want := `{"bandwidth":{"ingressRate":10000000,"ingressBurst":4294967295},` +
		`"dns":{"servers":["10.96.0.10"],"searches":["default.svc.cluster.local"],"options":["ndots:5"]},` +
		`"ipRanges":[[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00:10:244:1::/64"}]],` +
		`"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},` +
		`{"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"127.0.0.1"},` +
		`{"hostPort":3868,"containerPort":3868,"protocol":"tcp"}]}`
	if string(got) != want {
		t.Fatalf("capability args\n got %s\nwant %s", got, want)
	}
	if bandwidthBurst != math.MaxUint32 {
		t.Fatal("burst changed: pods would shape differently than on containerd")
	}

	// Nothing asked for, nothing passed: no plugin sees an empty capability.
	empty, err := (&Attachment{PodID: "p2", PortMappings: []PortMapping{{ContainerPort: 80}}, DNS: &DNS{}}).capabilityArgs()
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty attachment gave %v, %v", empty, err)
	}
}

func TestAttachmentRejects(t *testing.T) {
	for name, a := range map[string]Attachment{
		"host port range":  {PodID: "p", PortMappings: []PortMapping{{HostPort: 70000, ContainerPort: 80}}},
		"container port 0": {PodID: "p", PortMappings: []PortMapping{{HostPort: 80}}},
		"protocol":         {PodID: "p", PortMappings: []PortMapping{{HostPort: 80, ContainerPort: 80, Protocol: "icmp"}}},
		"host IP":          {PodID: "p", PortMappings: []PortMapping{{HostPort: 80, ContainerPort: 80, HostIP: "localhost"}}},
		"ingress":          {PodID: "p", IngressBandwidth: "lots"},
		"egress":           {PodID: "p", EgressBandwidth: "1"},
	} {
		if _, err := a.capabilityArgs(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	for _, id := range []string{"", "a/b", "..", "."} {
		a := Attachment{PodID: id}
		if err := a.validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("pod ID %q: %v, want InvalidArgument", id, err)
		}
	}
}

func TestCNIArgs(t *testing.T) {
	a := Attachment{PodID: "id", PodName: "web", PodNamespace: "ns", PodUID: "uid"}
	rt := a.runtimeConf("/run/netns/x", nil)
	want := [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "ns"}, {"K8S_POD_NAME", "web"},
		{"K8S_POD_INFRA_CONTAINER_ID", "id"}, {"K8S_POD_UID", "uid"}}
	if rt.ContainerID != "id" || rt.IfName != "eth0" || rt.NetNS != "/run/netns/x" || len(rt.Args) != len(want) {
		t.Fatalf("runtime conf %+v", rt)
	}
	for i := range want {
		if rt.Args[i] != want[i] {
			t.Fatalf("arg %d = %v, want %v", i, rt.Args[i], want[i])
		}
	}
}
