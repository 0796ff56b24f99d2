package network

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestParseNetDev(t *testing.T) {
	// As a 6.x kernel prints it; the second interface's receive bytes have
	// grown into the colon.
	const data = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0
  eth0:12345678901234 9876 3 0 0 0 0 0 4242 17 5 0 0 0 0 0
 vxlan.calico:  100  1  0    0    0     0          0         0      200       2    0    0    0     0       0          0
`
	got, err := parseNetDev(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []IfaceStats{
		{Name: "eth0", RxBytes: 12345678901234, RxErrors: 3, TxBytes: 4242, TxErrors: 5},
		{Name: "vxlan.calico", RxBytes: 100, TxBytes: 200},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{
		"",
		"no header\n",
		data + "  eth1: 1 2 3\n",
		data + "  eth1: 1 2 3 4 5 6 7 8 x 10 11 12 13 14 15 16\n",
		data + "garbage\n",
	} {
		if out, err := parseNetDev(bad); err == nil {
			t.Errorf("parseNetDev(%q) = %+v, want an error", bad, out)
		}
	}
}

// podPair makes two namespaces joined by a veth pair: "bst-pod" in the first
// (the pod) at 192.168.77.1/30 and "bst-peer" in the second at .2. The names
// differ from any host interface, so a host interface in the result shows
// that the wrong namespace was read.
func podPair(t *testing.T) (pod, peer string) {
	t.Helper()
	pod, peer = filepath.Join(t.TempDir(), "pod"), filepath.Join(t.TempDir(), "peer")
	for _, p := range []string{pod, peer} {
		if err := CreateNetNS(p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = RemoveNetNS(p) })
	}
	peerNS, err := ns.GetNS(peer)
	if err != nil {
		t.Fatal(err)
	}
	defer peerNS.Close()
	err = ns.WithNetNSPath(pod, func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bst-pod"}, PeerName: "bst-peer",
			PeerNamespace: netlink.NsFd(int(peerNS.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		return addrUp("bst-pod", "192.168.77.1/30")
	})
	if err == nil {
		err = ns.WithNetNSPath(peer, func(ns.NetNS) error { return addrUp("bst-peer", "192.168.77.2/30") })
	}
	if err != nil {
		t.Fatal(err)
	}
	return pod, peer
}

func addrUp(name, cidr string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, addr); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func TestInterfaceStatsCountsTrafficInThePodNamespace(t *testing.T) {
	requireRoot(t)
	pod, peer := podPair(t)
	before, err := InterfaceStats(pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 1 || before[0].Name != "bst-pod" {
		t.Fatalf("interfaces of the pod namespace: %+v, want only bst-pod (no lo, no host interfaces)", before)
	}

	// 1 MiB from the peer to a listener in the pod.
	const size = 1 << 20
	var lis net.Listener
	err = ns.WithNetNSPath(pod, func(ns.NetNS) error {
		lis, err = net.Listen("tcp", "192.168.77.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	err = ns.WithNetNSPath(peer, func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(make([]byte, size))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := <-received; n != size {
		t.Fatalf("pod received %d bytes, want %d", n, size)
	}

	after, err := InterfaceStats(pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].RxBytes-before[0].RxBytes < size || after[0].TxBytes <= before[0].TxBytes {
		t.Fatalf("after 1 MiB in: %+v (before %+v)", after, before)
	}
	// The same counters as the kernel gives over netlink, a second source.
	var link *netlink.LinkStatistics
	err = ns.WithNetNSPath(pod, func(ns.NetNS) error {
		l, err := netlink.LinkByName("bst-pod")
		if err == nil {
			link = l.Attrs().Statistics
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if link.RxBytes < after[0].RxBytes || link.RxBytes-after[0].RxBytes > 4096 || link.RxErrors != after[0].RxErrors {
		t.Errorf("netlink says rx %d bytes %d errors; InterfaceStats %+v", link.RxBytes, link.RxErrors, after[0])
	}
	peerStats, err := InterfaceStats(peer)
	if err != nil || len(peerStats) != 1 || peerStats[0].TxBytes < size {
		t.Fatalf("peer side: %+v %v", peerStats, err)
	}
	noThreadIn(t, pod)
}

// noThreadIn fails if a thread of this process stays in the namespace
// pinned at pin: reading stats must not leave a thread switched. A thread
// that entered it is ending when InterfaceStats returns, but its exit is
// asynchronous, so it may still be listed for a moment.
func noThreadIn(t *testing.T, pin string) {
	t.Helper()
	var pinSt unix.Stat_t
	if err := unix.Stat(pin, &pinSt); err != nil {
		t.Fatal(err)
	}
	inPod := func() []string {
		tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range tasks {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err == nil && st.Ino == pinSt.Ino && st.Dev == pinSt.Dev {
				out = append(out, p)
			}
		}
		return out
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		left := inPod()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads still in the pod namespace: %v", left)
		}
	}
}

func TestInterfaceStatsMissingOrStalePin(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale")
	if err := os.WriteFile(stale, nil, 0o444); err != nil { // what a reboot leaves
		t.Fatal(err)
	}
	removed := filepath.Join(dir, "removed")
	if err := CreateNetNS(removed); err != nil {
		t.Fatal(err)
	}
	if err := RemoveNetNS(removed); err != nil {
		t.Fatal(err)
	}
	for _, pin := range []string{filepath.Join(dir, "missing"), stale, removed} {
		if _, err := InterfaceStats(pin); !errdefs.IsNotFound(err) {
			t.Errorf("InterfaceStats(%s): %v, want NotFound", filepath.Base(pin), err)
		}
	}
}

func TestInterfaceStatsConcurrent(t *testing.T) {
	requireRoot(t)
	pod, _ := podPair(t)
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() {
			s, err := InterfaceStats(pod)
			if err == nil && (len(s) != 1 || s[0].Name != "bst-pod") {
				err = fmt.Errorf("got %+v", s)
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	noThreadIn(t, pod)
}
