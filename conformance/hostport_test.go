package conformance

// Host ports (PortMappings with a HostPort) on a berth started by the suite:
// the portmap plugin forwards them and its per-pod iptables state goes with
// the pod.

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

func TestHostPortReachesPod(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	netName := podNetworkName(t, d)
	ctx := context.Background()

	// A containerPort without a hostPort, as kubelet sends it for every
	// declared port: no mapping, so portmap does not run at all.
	plainCfg := podConfig("no-hostport")
	plainCfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080}}
	plain := runPod(t, tg, plainCfg)

	hostPort := pickHostPort(t)
	cfg := podConfig("hostport")
	cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: hostPort}}
	id := runPod(t, tg, cfg)
	podIP := podStatus(t, tg, id).GetNetwork().GetIp()

	const reply = "hello via host port"
	serveInPod(t, filepath.Join(sandboxDir(d, id), "netns"), "0.0.0.0:8080", reply)

	// portmap's per-pod chain: the jump to it from CNI-HOSTPORT-DNAT carries
	// the pod ID in a comment, the chain's name is a hash of network and ID.
	rules := iptablesLines(t, "nat", id)
	if len(rules) == 0 {
		t.Fatalf("no nat rules mention pod %s after RunPodSandbox with a host port", id)
	}
	chains := dnatChainsIn(rules)
	if want := portmapDNATChain(netName, id); !slices.Equal(chains, []string{want}) {
		t.Fatalf("DNAT chains of the pod %v, want [%s]; its rules:\n%s", chains, want, strings.Join(rules, "\n"))
	}
	if got := cniCachedPlugins(t, d, netName, id); !slices.Contains(got, "portmap") {
		t.Errorf("pod with a host port ran plugins %v, want portmap among them", got)
	}
	if lrn, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + d.Network.Bridge + "/route_localnet"); err == nil {
		t.Logf("route_localnet on %s: %s", d.Network.Bridge, strings.TrimSpace(string(lrn)))
	}

	// The host's own non-loopback address (the bridge gateway) and, through
	// portmap's route_localnet + masquerade, 127.0.0.1.
	gateway := netip.MustParsePrefix(d.Network.Subnet).Masked().Addr().Next()
	for _, host := range []string{gateway.String(), "127.0.0.1"} {
		addr := net.JoinHostPort(host, strconv.Itoa(int(hostPort)))
		if got, err := fetch(addr); err != nil || got != reply {
			t.Errorf("%s -> pod %s:8080: %q, %v", addr, podIP, got, err)
		} else {
			t.Logf("%s reaches the pod (%s:8080)", addr, podIP)
		}
	}

	// No mapping, no portmap: nothing in nat for the plain pod.
	if rules := iptablesLines(t, "nat", plain, portmapDNATChain(netName, plain)); len(rules) != 0 {
		t.Errorf("nat rules for a pod without host ports:\n%s", strings.Join(rules, "\n"))
	}
	if got := cniCachedPlugins(t, d, netName, plain); slices.Contains(got, "portmap") {
		t.Errorf("pod without host ports ran plugins %v, want no portmap", got)
	}

	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	// The pod's chain and every rule naming it or the pod are gone; the
	// shared CNI-HOSTPORT-* chains may stay.
	if left := iptablesLines(t, "nat", append([]string{id}, chains...)...); len(left) != 0 {
		t.Errorf("nat rules left after RemovePodSandbox:\n%s", strings.Join(left, "\n"))
	}
	addr := net.JoinHostPort(gateway.String(), strconv.Itoa(int(hostPort)))
	if got, err := fetch(addr); err == nil {
		t.Errorf("%s still answers after RemovePodSandbox: %q", addr, got)
	}
	if ips := d.Network.AllocatedIPs(t); len(ips) != 1 {
		t.Errorf("allocated IPs after removing one of two pods: %v", ips)
	}
}

// pickHostPort returns a TCP port free on every host address.
func pickHostPort(t testing.TB) int32 {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// serveInPod listens on addr inside the network namespace pinned at pin and
// answers every connection with reply, until the test ends.
func serveInPod(t testing.TB, pin, addr, reply string) {
	t.Helper()
	var l net.Listener
	err := ns.WithNetNSPath(pin, func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, pin, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	})
	t.Cleanup(func() {
		l.Close() // the socket holds the namespace: release it with the test
		wg.Wait()
	})
}

// fetch connects to addr and returns all it sends before closing.
func fetch(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// iptablesLines returns the lines of iptables-save (one table, or all for
// "") that contain any of subs.
func iptablesLines(t testing.TB, table string, subs ...string) []string {
	t.Helper()
	args := []string{}
	if table != "" {
		args = append(args, "-t", table)
	}
	out, err := exec.Command("iptables-save", args...).Output()
	if err != nil {
		t.Fatalf("iptables-save %v: %v", args, err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(out), "\n") {
		if slices.ContainsFunc(subs, func(s string) bool { return s != "" && strings.Contains(l, s) }) {
			lines = append(lines, l)
		}
	}
	return lines
}

var dnatChainRE = regexp.MustCompile(`CNI-DN-[0-9a-f]+`)

// dnatChainsIn returns the portmap per-pod chains named in rules, sorted.
func dnatChainsIn(rules []string) []string {
	var out []string
	for _, r := range rules {
		for _, c := range dnatChainRE.FindAllString(r, -1) {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

// portmapDNATChain is the name portmap gives a pod's DNAT chain: "CNI-DN-"
// and the SHA-512 of network name and container ID, 28 characters in all
// (containernetworking/plugins pkg/utils.MustFormatChainNameWithPrefix).
func portmapDNATChain(netName, podID string) string {
	sum := sha512.Sum512([]byte(netName + podID))
	return ("CNI-DN-" + hex.EncodeToString(sum[:]))[:28]
}

// podNetworkName is the name of the daemon's test CNI network.
func podNetworkName(t testing.TB, d *framework.Daemon) string {
	t.Helper()
	b, err := os.ReadFile(d.Network.ConfFile)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct{ Name string }
	if err := json.Unmarshal(b, &conf); err != nil || conf.Name == "" {
		t.Fatalf("network name in %s: %q, %v", d.Network.ConfFile, conf.Name, err)
	}
	return conf.Name
}

// cniCachedPlugins returns the plugin types libcni recorded for the pod's
// ADD in the daemon's CNI cache (<root>/network/cni-cache).
func cniCachedPlugins(t testing.TB, d *framework.Daemon, netName, podID string) []string {
	t.Helper()
	path := filepath.Join(d.Root, "network", "cni-cache", "results", netName+"-"+podID+"-eth0")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("CNI cache entry of pod %s: %v", podID, err)
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
		t.Fatalf("%s: %v", path, err)
	}
	if err := json.Unmarshal(entry.Config, &list); err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Type)
	}
	return types
}
