package network

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
)

func TestTwoPodsReachEachOther(t *testing.T) {
	n := newTestNet(t, netOptions{})
	a, b := n.newPod(t, "a"), n.newPod(t, "b")
	ra, rb := n.setup(t, a), n.setup(t, b)
	for _, r := range []*Result{ra, rb} {
		if len(r.IPs) != 1 || !n.subnet.Contains(r.IPs[0]) || r.NetworkName != n.name || len(r.Raw) == 0 {
			t.Fatalf("result %+v: want one IP in %s from network %s", r, n.subnet, n.name)
		}
		if !n.ipAllocated(t, r.IPs[0]) {
			t.Fatalf("host-local has no record of %s", r.IPs[0])
		}
	}
	if ra.IPs[0] == rb.IPs[0] {
		t.Fatalf("both pods got %s", ra.IPs[0])
	}

	serveIn(t, b.NetNSPath, ":8080", "hello from b")
	got, err := fetchFrom(a.NetNSPath, net.JoinHostPort(rb.IPs[0].String(), "8080"))
	if err != nil || got != "hello from b" {
		t.Fatalf("a -> b: %q, %v", got, err)
	}

	for _, p := range []Attachment{a, b} {
		if err := n.mgr.Teardown(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if left := n.allocations(t); len(left) != 0 {
		t.Fatalf("addresses still allocated after Teardown: %v", left)
	}
	if c := n.bridgePorts(t); c != 0 {
		t.Fatalf("%d veths still on the bridge after Teardown", c)
	}
}

// A host port reaches the pod from the host's own 127.0.0.1: portmap DNATs
// locally generated traffic in OUTPUT and, with snat (its default), sets
// route_localnet on the bridge and masquerades, so 127.0.0.1 works without
// falling back to the bridge gateway's address.
func TestHostPortReachesPod(t *testing.T) {
	n := newTestNet(t, netOptions{})
	hostPort := freeHostPort(t)
	p := n.newPod(t, "web", PortMapping{HostPort: int32(hostPort), ContainerPort: 8080, Protocol: "TCP"})
	r := n.setup(t, p)
	serveIn(t, p.NetNSPath, ":8080", "hello via host port")

	if got := n.cachedPlugins(t, p.PodID); !slices.Contains(got, "portmap") {
		t.Fatalf("pod with a host port ran %v, want portmap among them", got)
	}
	if len(natRulesFor(t, p.PodID)) == 0 {
		t.Fatal("portmap created no nat rules for the pod")
	}
	for _, host := range []string{"127.0.0.1", n.gateway.String()} {
		got, err := fetchFrom("", net.JoinHostPort(host, strconv.Itoa(hostPort)))
		if err != nil || got != "hello via host port" {
			t.Fatalf("%s:%d -> pod: %q, %v", host, hostPort, got, err)
		}
	}

	if err := n.mgr.Teardown(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if rules := natRulesFor(t, p.PodID); len(rules) != 0 {
		t.Fatalf("portmap rules left after Teardown:\n%s", strings.Join(rules, "\n"))
	}
	if n.ipAllocated(t, r.IPs[0]) {
		t.Fatalf("%s still allocated after Teardown", r.IPs[0])
	}
}

func TestNoPortmapWithoutHostPorts(t *testing.T) {
	n := newTestNet(t, netOptions{})
	// A containerPort without a hostPort is not a mapping.
	p := n.newPod(t, "plain", PortMapping{ContainerPort: 80, Protocol: "tcp"})
	n.setup(t, p)
	if got := n.cachedPlugins(t, p.PodID); !slices.Equal(got, []string{"bridge"}) {
		t.Fatalf("pod without host ports ran %v, want only bridge", got)
	}
	if rules := natRulesFor(t, p.PodID); len(rules) != 0 {
		t.Fatalf("nat rules for a pod without host ports:\n%s", strings.Join(rules, "\n"))
	}
}

// The pin is removed before Teardown (the namespace is gone): DEL still
// releases the address and the port mapping.
func TestTeardownAfterNetNSRemoved(t *testing.T) {
	n := newTestNet(t, netOptions{})
	p := n.newPod(t, "gone", PortMapping{HostPort: int32(freeHostPort(t)), ContainerPort: 80})
	r := n.setup(t, p)
	if err := RemoveNetNS(p.NetNSPath); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second Teardown is a no-op that succeeds
		if err := n.mgr.Teardown(context.Background(), p); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
	}
	if n.ipAllocated(t, r.IPs[0]) {
		t.Fatalf("%s still allocated", r.IPs[0])
	}
	if rules := natRulesFor(t, p.PodID); len(rules) != 0 {
		t.Fatalf("portmap rules left:\n%s", strings.Join(rules, "\n"))
	}
}

// libcni's cache is wiped (state dir cleared) and, in the second case, the
// namespace is gone too: DEL runs from the current config and the
// attachment's own fields, and still releases everything.
func TestTeardownWithoutCache(t *testing.T) {
	for _, removePin := range []bool{false, true} {
		t.Run("pin removed="+strconv.FormatBool(removePin), func(t *testing.T) {
			n := newTestNet(t, netOptions{})
			p := n.newPod(t, "nocache", PortMapping{HostPort: int32(freeHostPort(t)), ContainerPort: 80, Protocol: "udp"})
			r := n.setup(t, p)
			if err := os.RemoveAll(n.cacheDir); err != nil {
				t.Fatal(err)
			}
			if removePin {
				if err := RemoveNetNS(p.NetNSPath); err != nil {
					t.Fatal(err)
				}
			}
			if err := n.mgr.Teardown(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			if n.ipAllocated(t, r.IPs[0]) {
				t.Fatalf("%s still allocated", r.IPs[0])
			}
			if rules := natRulesFor(t, p.PodID); len(rules) != 0 {
				t.Fatalf("portmap rules left:\n%s", strings.Join(rules, "\n"))
			}
			if c := n.bridgePorts(t); c != 0 && !removePin {
				t.Fatalf("%d veths left on the bridge", c)
			}
		})
	}
}

// The cached config is what DEL replays, even after the config on disk
// changed: here it is deleted altogether.
func TestTeardownUsesCacheAfterConfigRemoved(t *testing.T) {
	n := newTestNet(t, netOptions{})
	p := n.newPod(t, "cached", PortMapping{HostPort: int32(freeHostPort(t)), ContainerPort: 80})
	r := n.setup(t, p)
	if err := os.Remove(filepath.Join(n.confDir, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := n.mgr.Teardown(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if n.ipAllocated(t, r.IPs[0]) || len(natRulesFor(t, p.PodID)) != 0 || n.bridgePorts(t) != 0 {
		t.Fatal("Teardown from the cache left the address, nat rules or the veth behind")
	}
	// Nothing cached and no config: nothing to run, and not an error.
	if err := n.mgr.Teardown(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func TestNoConfigThenConfigAdded(t *testing.T) {
	n := newTestNet(t, netOptions{noConfig: true})
	if err := n.mgr.Ready(); !errdefs.IsNotFound(err) {
		t.Fatalf("Ready() with no config = %v, want NotFound", err)
	}
	p := n.newPod(t, "early")
	_, err := n.mgr.Setup(context.Background(), p)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), n.confDir) {
		t.Fatalf("Setup with no config = %v, want FailedPrecondition naming %s", err, n.confDir)
	}

	n.writeConfig(t, netOptions{})
	if err := n.mgr.Ready(); err != nil {
		t.Fatalf("Ready() after the config was added: %v", err)
	}
	r := n.setup(t, p)
	if !n.subnet.Contains(r.IPs[0]) {
		t.Fatalf("got %s, want an address in %s", r.IPs[0], n.subnet)
	}
}

// ADD fails after bridge allocated an address (portmap's config is broken,
// so its DEL fails too): the address is still released, because DEL goes on
// plugin by plugin past portmap's failure.
func TestFailedSetupLeaksNothing(t *testing.T) {
	n := newTestNet(t, netOptions{portmap: `"backend":"bogus"`})
	p := n.newPod(t, "doomed", PortMapping{HostPort: int32(freeHostPort(t)), ContainerPort: 80})
	_, err := n.mgr.Setup(context.Background(), p)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("Setup = %v, want Unavailable carrying portmap's message", err)
	}
	if left := n.allocations(t); len(left) != 0 {
		t.Fatalf("failed Setup left addresses allocated: %v", left)
	}
	if c := n.bridgePorts(t); c != 0 {
		t.Fatalf("failed Setup left %d veths on the bridge", c)
	}
	if _, err := os.Stat(filepath.Join(n.cacheDir, "results", n.name+"-"+p.PodID+"-eth0")); err == nil {
		t.Fatal("failed Setup left a libcni cache entry")
	}
	// Until the config is fixed, Teardown reports portmap's failure (the
	// address is released all the same); afterwards it succeeds.
	if err := n.mgr.Teardown(context.Background(), p); !errdefs.IsUnavailable(err) {
		t.Fatalf("Teardown with a broken portmap = %v, want Unavailable", err)
	}
	n.writeConfig(t, netOptions{})
	if err := n.mgr.Teardown(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// Pod CIDRs from kubelet reach host-local through the ipRanges capability,
// in a config that has no ranges of its own.
func TestPodCIDRsAsIPRanges(t *testing.T) {
	n := newTestNet(t, netOptions{bridgeCaps: `{"ipRanges":true}`, noRanges: true})
	p := n.newPod(t, "ranged")
	p.PodCIDRs = []netip.Prefix{n.subnet}
	r := n.setup(t, p)
	if len(r.IPs) != 1 || !n.subnet.Contains(r.IPs[0]) {
		t.Fatalf("got %v, want one address in the pod CIDR %s", r.IPs, n.subnet)
	}
}

// The bandwidth annotation reaches the bandwidth plugin in bits/s: it
// shapes the pod's ingress with a TBF qdisc on the host-side veth.
func TestBandwidth(t *testing.T) {
	n := newTestNet(t, netOptions{bandwidth: true})
	p := n.newPod(t, "shaped")
	p.IngressBandwidth = "10M"
	n.setup(t, p)
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var rate uint64
	for _, l := range links {
		if l.Attrs().MasterIndex != br.Attrs().Index {
			continue
		}
		qdiscs, err := netlink.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qdiscs {
			if tbf, ok := q.(*netlink.Tbf); ok {
				rate = tbf.Rate
			}
		}
	}
	if rate != 10_000_000/8 { // netlink reports bytes per second
		t.Fatalf("pod veth shaped at %d bytes/s, want %d", rate, 10_000_000/8)
	}
}

// freeHostPort returns a TCP port nothing on the host listens on.
func freeHostPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Pods start and stop concurrently (kubelet runs pod workers in parallel);
// each gets its own address and all of them are released.
func TestConcurrentPods(t *testing.T) {
	n := newTestNet(t, netOptions{})
	pods := make([]Attachment, 6)
	for i := range pods {
		pods[i] = n.newPod(t, "c"+strconv.Itoa(i))
	}
	ips := make([]netip.Addr, len(pods))
	errs := make(chan error, len(pods))
	for i, p := range pods {
		go func() {
			r, err := n.mgr.Setup(context.Background(), p)
			if err == nil {
				ips[i] = r.IPs[0]
			}
			errs <- err
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	if len(slices.Compact(slices.Clone(ips))) != len(pods) {
		t.Fatalf("addresses not unique: %v", ips)
	}
	for _, p := range pods {
		go func() { errs <- n.mgr.Teardown(context.Background(), p) }()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if left := n.allocations(t); len(left) != 0 {
		t.Fatalf("addresses left: %v", left)
	}
}
