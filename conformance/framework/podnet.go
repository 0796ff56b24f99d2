package framework

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// PodNetwork is a bridge + host-local CNI network made for one test daemon:
// its own bridge name, subnet and IP store, so tests can see allocations.
type PodNetwork struct {
	Bridge string
	// Subnet is the pod range, e.g. "10.124.17.0/24".
	Subnet string
	// IPStore is host-local's data dir: one file per allocated IP.
	IPStore string
	// ConfFile is the conflist written into the daemon's CNI conf dir.
	ConfFile string
}

// AddPodNetwork writes a bridge network (with portmap) into confDir and
// registers cleanup of the bridge. The plugins must be in the daemon's
// CNI bin dir (CNIPlugins).
func AddPodNetwork(t testing.TB, confDir string) *PodNetwork {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	n := &PodNetwork{
		Bridge:  "bt" + hex.EncodeToString(b), // at most 15 bytes
		Subnet:  fmt.Sprintf("10.124.%d.0/24", b[0]),
		IPStore: filepath.Join(t.TempDir(), "ipam"),
	}
	n.ConfFile = filepath.Join(confDir, "10-test.conflist")
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "test-%s",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`, n.Bridge, n.Bridge, n.IPStore, n.Subnet)
	if err := os.WriteFile(n.ConfFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The bridge outlives its pods by design; a test network must not.
		_ = exec.Command("ip", "link", "del", n.Bridge).Run()
	})
	return n
}

// AllocatedIPs lists the IPs host-local has handed out and not released.
func (n *PodNetwork) AllocatedIPs(t testing.TB) []string {
	t.Helper()
	var ips []string
	_ = filepath.WalkDir(n.IPStore, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		name := d.Name()
		if name == "lock" || len(name) > 10 && name[:10] == "last_reser" {
			return nil
		}
		ips = append(ips, name)
		return nil
	})
	return ips
}
