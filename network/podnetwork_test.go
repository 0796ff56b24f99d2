package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const bridgeList = `{"cniVersion":"1.0.0","name":"podnet","plugins":[
 {"type":"bridge","bridge":"berth0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.87.0.0/16"}]]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`

// cniDirs returns a conf dir and a bin dir holding the named (empty) plugins.
func cniDirs(t *testing.T, plugins ...string) (confDir, binDir string) {
	t.Helper()
	confDir, binDir = t.TempDir(), t.TempDir()
	for _, p := range plugins {
		if err := os.WriteFile(filepath.Join(binDir, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return confDir, binDir
}

func put(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadPodNetworkEmptyDir(t *testing.T) {
	confDir, binDir := cniDirs(t)
	_, err := LoadPodNetwork(confDir, []string{binDir})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), confDir) {
		t.Fatalf("want NotFound naming %s, got %v", confDir, err)
	}
}

func TestLoadPodNetworkMissingDir(t *testing.T) {
	_, err := LoadPodNetwork(filepath.Join(t.TempDir(), "absent"), []string{"/nonexistent"})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("want NotFound, got %v", err)
	}
}

func TestLoadPodNetworkPicksFirstUsableByName(t *testing.T) {
	confDir, binDir := cniDirs(t, "bridge", "portmap", "host-local")
	put(t, confDir, "05-broken.conflist", `{"name":`)
	put(t, confDir, "10-podnet.conflist", bridgeList)
	put(t, confDir, "20-other.conf", `{"cniVersion":"1.0.0","name":"other","type":"bridge"}`)
	put(t, confDir, "README", "not a config")
	n, err := LoadPodNetwork(confDir, []string{"/nonexistent", binDir})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(n.File) != "10-podnet.conflist" || n.Config.Name != "podnet" || len(n.Config.Plugins) != 2 {
		t.Fatalf("picked %s (%s, %d plugins)", n.File, n.Config.Name, len(n.Config.Plugins))
	}
}

func TestLoadPodNetworkSingleConf(t *testing.T) {
	confDir, binDir := cniDirs(t, "bridge")
	put(t, confDir, "10-single.conf", `{"cniVersion":"0.4.0","name":"single","type":"bridge"}`)
	n, err := LoadPodNetwork(confDir, []string{binDir})
	if err != nil {
		t.Fatal(err)
	}
	if n.Config.Name != "single" || len(n.Config.Plugins) != 1 || n.Config.Plugins[0].Network.Type != "bridge" {
		t.Fatalf("single conf not up-converted: %+v", n.Config)
	}
}

func TestLoadPodNetworkMissingPluginIsReported(t *testing.T) {
	confDir, binDir := cniDirs(t, "bridge", "host-local")
	put(t, confDir, "10-podnet.conflist", bridgeList)
	_, err := LoadPodNetwork(confDir, []string{binDir})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("want NotFound, got %v", err)
	}
	for _, want := range []string{"10-podnet.conflist", `"portmap"`, binDir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
