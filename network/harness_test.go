package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Integration tests need root and the CNI plugins from `make cni-plugins`.
// Without them they skip, unless BERTH_INTEGRATION=1 says they must run.
func requireIntegration(t testing.TB) string {
	t.Helper()
	must := os.Getenv("BERTH_INTEGRATION") == "1"
	skip := func(why string) {
		t.Helper()
		if must {
			t.Fatalf("BERTH_INTEGRATION=1 but %s", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		skip("needs root (network namespaces, bridges, iptables)")
	}
	dir := os.Getenv("BERTH_CNI_PLUGINS")
	if dir == "" {
		dir = filepath.Join("..", "bin", "cni")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "bandwidth"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			skip(fmt.Sprintf("CNI plugin %s missing in %s (run make cni-plugins or set BERTH_CNI_PLUGINS)", p, dir))
		}
	}
	return dir
}

// testNet is a bridge network of its own per test: a unique bridge and
// subnet, its own conf dir, libcni cache and host-local store, all removed
// at cleanup.
type testNet struct {
	name     string // CNI network name; contains '-' on purpose (cache file names)
	bridge   string
	subnet   netip.Prefix
	gateway  netip.Addr
	confDir  string
	binDir   string
	cacheDir string
	dataDir  string // host-local's store: <dataDir>/<name>/<ip> per allocated address
	mgr      *Manager
}

type netOptions struct {
	noConfig   bool   // start with an empty conf dir
	portmap    string // extra portmap keys, e.g. `"backend":"bogus"`
	bandwidth  bool   // add the bandwidth plugin
	bridgeCaps string // capabilities of the bridge plugin (JSON object)
	// noRanges leaves host-local without ranges of its own: with the
	// ipRanges capability it prepends the runtime's ranges to the
	// configured ones, and a pod would get an address from each.
	noRanges bool
}

func newTestNet(t testing.TB, o netOptions) *testNet {
	t.Helper()
	n := &testNet{
		binDir:   requireIntegration(t),
		confDir:  t.TempDir(),
		cacheDir: t.TempDir(),
		dataDir:  t.TempDir(),
		bridge:   "bt" + randHex(t, 4),
		subnet:   freeSubnet(t),
	}
	n.name = "berth-test-" + n.bridge
	n.gateway = n.subnet.Addr().Next()
	restoreIPForward(t)
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(n.bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bridge %s: %v", n.bridge, err)
			}
		}
	})
	if !o.noConfig {
		n.writeConfig(t, o)
	}
	n.mgr = NewManager(ManagerOptions{
		ConfDir: n.confDir, BinDirs: []string{n.binDir}, CacheDir: n.cacheDir,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return n
}

func (n *testNet) writeConfig(t testing.TB, o netOptions) {
	t.Helper()
	caps := o.bridgeCaps
	if caps == "" {
		caps = "{}"
	}
	ranges := fmt.Sprintf(`"ranges":[[{"subnet":%q}]],`, n.subnet)
	if o.noRanges {
		ranges = ""
	}
	plugins := []string{fmt.Sprintf(`{"type":"bridge","bridge":%q,"isGateway":true,"hairpinMode":true,"capabilities":%s,
	  "ipam":{"type":"host-local","dataDir":%q,%s"routes":[{"dst":"0.0.0.0/0"}]}}`,
		n.bridge, caps, n.dataDir, ranges)}
	if o.bandwidth {
		plugins = append(plugins, `{"type":"bandwidth","capabilities":{"bandwidth":true}}`)
	}
	pm := `{"type":"portmap","capabilities":{"portMappings":true}`
	if o.portmap != "" {
		pm += "," + o.portmap
	}
	plugins = append(plugins, pm+"}")
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, n.name, strings.Join(plugins, ","))
	if err := os.WriteFile(filepath.Join(n.confDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newPod pins a netns with loopback up and returns its attachment. Cleanup
// tears it down (idempotent, a safety net for failing tests) and unpins it.
func (n *testNet) newPod(t testing.TB, name string, ports ...PortMapping) Attachment {
	t.Helper()
	pin := filepath.Join(t.TempDir(), "netns")
	if err := CreateNetNS(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveNetNS(pin); err != nil {
			t.Error(err)
		}
	})
	if err := BringUpLoopback(pin); err != nil {
		t.Fatal(err)
	}
	a := Attachment{
		PodID: randHex(t, 32), PodName: name, PodNamespace: "default", PodUID: randHex(t, 16),
		NetNSPath: pin, PortMappings: ports,
	}
	t.Cleanup(func() {
		if err := n.mgr.Teardown(context.Background(), a); err != nil {
			t.Errorf("cleanup teardown of %s: %v", name, err)
		}
	})
	return a
}

func (n *testNet) setup(t testing.TB, a Attachment) *Result {
	t.Helper()
	res, err := n.mgr.Setup(context.Background(), a)
	if err != nil {
		t.Fatalf("Setup(%s): %v", a.PodName, err)
	}
	return res
}

// ipAllocated reports whether host-local holds ip for this network.
func (n *testNet) ipAllocated(t testing.TB, ip netip.Addr) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(n.dataDir, n.name, ip.String()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// allocations lists host-local's address files for this network.
func (n *testNet) allocations(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.dataDir, n.name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// cachedPlugins returns the plugin types libcni cached for the pod's ADD.
func (n *testNet) cachedPlugins(t testing.TB, podID string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.cacheDir, "results", n.name+"-"+podID+"-eth0"))
	if err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Config []byte `json:"config"`
	}
	var list struct {
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &entry); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(entry.Config, &list); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Type)
	}
	return types
}

// natRulesFor returns the nat-table iptables lines that mention id
// (portmap's per-pod rules carry the container ID in a comment).
func natRulesFor(t testing.TB, id string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, id) {
			lines = append(lines, l)
		}
	}
	return lines
}

// bridgePorts counts the links enslaved to the test bridge (pod veths).
func (n *testNet) bridgePorts(t testing.TB) int {
	t.Helper()
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		return 0
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			c++
		}
	}
	return c
}

// serveIn listens on addr inside the pod's netns (pin "" = the host) and
// answers every connection with reply.
func serveIn(t testing.TB, pin, addr, reply string) net.Listener {
	t.Helper()
	var l net.Listener
	listen := func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}
	var err error
	if pin == "" {
		err = listen(nil)
	} else {
		err = ns.WithNetNSPath(pin, listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	return l
}

// fetchFrom dials addr from inside the netns at pin ("" = the host) and
// returns what the server said. The socket is created on a thread switched
// into the namespace, so it belongs there for its whole life.
func fetchFrom(pin, addr string) (string, error) {
	var reply []byte
	fetch := func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		reply, err = io.ReadAll(c)
		return err
	}
	var err error
	if pin == "" {
		err = fetch(nil)
	} else {
		err = ns.WithNetNSPath(pin, fetch)
	}
	return string(reply), err
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)[:n]
}

// freeSubnet picks a 10.200.x.0/24 that no host address or route uses.
func freeSubnet(t testing.TB) netip.Prefix {
	t.Helper()
	for range 100 {
		x, err := rand.Int(rand.Reader, big.NewInt(256))
		if err != nil {
			t.Fatal(err)
		}
		p := netip.MustParsePrefix(fmt.Sprintf("10.200.%d.0/24", x.Int64()))
		if !subnetInUse(t, p) {
			return p
		}
	}
	t.Fatal("no free 10.200.x.0/24 subnet")
	return netip.Prefix{}
}

func subnetInUse(t testing.TB, p netip.Prefix) bool {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			ones, _ := r.Dst.Mask.Size()
			if ones > 0 && netip.PrefixFrom(a.Unmap(), ones).Overlaps(p) {
				return true
			}
		}
	}
	return false
}

// restoreIPForward puts net.ipv4.ip_forward back at cleanup: the bridge
// plugin (isGateway) turns it on for the whole host, and a test should
// leave the host as it found it.
func restoreIPForward(t testing.TB) {
	const path = "/proc/sys/net/ipv4/ip_forward"
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(path, before, 0o644) })
}

// testWriter routes the Manager's log into the test's output.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
