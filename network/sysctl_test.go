package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/plugins/pkg/ns"
)

func TestSysctlPath(t *testing.T) {
	good := map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "/proc/sys/net/ipv4/ip_unprivileged_port_start",
		"net.ipv4.conf.eth0/100.forwarding":   "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
		"net.core.somaxconn":                  "/proc/sys/net/core/somaxconn",
	}
	for key, want := range good {
		if got, err := sysctlPath(key); err != nil || got != want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, key := range []string{
		"kernel.shm_rmid_forced", "net", "net.", "net..ipv4", "net.//.kernel.panic", "net.ipv4./",
		"netfoo.x", "vm.overcommit_memory", "net.ipv4.x\x00y", "net./..",
	} {
		if _, err := sysctlPath(key); !errdefs.IsInvalidArgument(err) {
			t.Errorf("sysctlPath(%q) = %v, want InvalidArgument", key, err)
		}
	}
}

// Validation happens before the namespace is entered, so a bad key is
// reported as such even without a namespace, and nothing is written.
func TestApplySysctlsRejects(t *testing.T) {
	for _, bad := range []map[string]string{
		{"kernel.msgmax": "1"},
		{"net.ipv4.ip_forward": "1", "vm.swappiness": "0"},
		{"net.ipv4.ip_forward": "1\nkernel.panic=1"},
	} {
		err := ApplySysctls("/nonexistent", bad)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ApplySysctls(%v) = %v, want InvalidArgument", bad, err)
		}
		for k := range bad {
			if !strings.HasPrefix(k, "net.") && !strings.Contains(err.Error(), k) {
				t.Errorf("error %q does not name the key %s", err, k)
			}
		}
	}
	if err := ApplySysctls("/nonexistent", nil); err != nil {
		t.Errorf("no sysctls: %v", err)
	}
}

func TestApplySysctlsInsideNetNSOnly(t *testing.T) {
	requireRoot(t)
	pin := filepath.Join(t.TempDir(), "netns")
	if err := CreateNetNS(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveNetNS(pin) })

	want := map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "80",
		"net.ipv4.ping_group_range":           "0\t2147483647",
	}
	host := map[string]string{}
	for k := range want {
		host[k] = readSysctl(t, "", k)
		if host[k] == want[k] {
			t.Fatalf("host already has %s=%s; the test cannot tell the namespaces apart", k, want[k])
		}
	}
	if err := ApplySysctls(pin, want); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got := readSysctl(t, pin, k); got != v {
			t.Errorf("%s in the pod = %q, want %q", k, got, v)
		}
		if got := readSysctl(t, "", k); got != host[k] {
			t.Errorf("%s on the host changed to %q", k, got)
		}
	}

	err := ApplySysctls(pin, map[string]string{"net.ipv4.no_such_sysctl": "1"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "net.ipv4.no_such_sysctl") {
		t.Fatalf("unknown sysctl = %v, want InvalidArgument naming it", err)
	}
}

// readSysctl reads a sysctl in the namespace at pin ("" = the host).
func readSysctl(t *testing.T, pin, key string) string {
	t.Helper()
	p, err := sysctlPath(key)
	if err != nil {
		t.Fatal(err)
	}
	var v []byte
	read := func(ns.NetNS) error {
		var err error
		v, err = os.ReadFile(p)
		return err
	}
	if pin == "" {
		err = read(nil)
	} else {
		err = ns.WithNetNSPath(pin, read)
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}
