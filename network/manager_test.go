package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

func TestEffectiveListDropsPortMappingOnlyPlugins(t *testing.T) {
	list, err := libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"podnet","plugins":[
		{"type":"bridge","bridge":"b0","ipam":{"type":"host-local"}},
		{"type":"bandwidth","capabilities":{"bandwidth":true}},
		{"type":"my-hostports","capabilities":{"portMappings":true,"unused":false}},
		{"type":"both","capabilities":{"portMappings":true,"bandwidth":true}},
		{"type":"portmap","capabilities":{"portMappings":true}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	without, err := effectiveList(list, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := pluginTypes(without); !slices.Equal(got, []string{"bridge", "bandwidth", "both"}) {
		t.Fatalf("without host ports: %v", got)
	}
	// Bytes (what libcni caches and Teardown replays) hold the same list.
	again, err := libcni.NetworkConfFromBytes(without.Bytes)
	if err != nil || !slices.Equal(pluginTypes(again), pluginTypes(without)) || again.Name != "podnet" || again.CNIVersion != "1.0.0" {
		t.Fatalf("re-parsed Bytes: %v, %v", again, err)
	}
	with, err := effectiveList(list, true)
	if err != nil || len(with.Plugins) != 5 {
		t.Fatalf("with host ports: %v, %v", with, err)
	}

	onlyPortmap, _ := libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"portmap"}]}`))
	if _, err := effectiveList(onlyPortmap, false); err == nil {
		t.Fatal("a list of nothing but portmap became empty without an error")
	}
}

func TestToResultPrimaryFirst(t *testing.T) {
	ipc := func(s string) *current.IPConfig {
		p := netip.MustParsePrefix(s)
		return &current.IPConfig{Address: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	}
	cases := []struct {
		ips  []*current.IPConfig
		want string
	}{
		{[]*current.IPConfig{ipc("fd00::5/64"), ipc("10.0.0.5/24")}, "[10.0.0.5 fd00::5]"},
		{[]*current.IPConfig{ipc("10.0.0.5/24"), ipc("fd00::5/64"), ipc("10.0.1.5/24")}, "[10.0.0.5 fd00::5 10.0.1.5]"},
		{[]*current.IPConfig{ipc("fd00::5/64"), ipc("fd00::6/64")}, "[fd00::5 fd00::6]"},
	}
	for _, c := range cases {
		res, err := toResult("n", &current.Result{CNIVersion: "1.0.0", IPs: c.ips})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(res.IPs); got != c.want {
			t.Errorf("IPs = %s, want %s", got, c.want)
		}
		var raw map[string]any
		if json.Unmarshal(res.Raw, &raw) != nil || raw["ips"] == nil {
			t.Errorf("Raw is not the CNI result: %s", res.Raw)
		}
	}
	if _, err := toResult("n", &current.Result{CNIVersion: "1.0.0"}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("no IPs: %v, want FailedPrecondition", err)
	}
}

func TestCNIErrorTypes(t *testing.T) {
	bg := context.Background()
	if err := cniError(bg, "add", &types.Error{Code: types.ErrInvalidNetworkConfig, Msg: "bad"}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("invalid config: %v", err)
	}
	err := cniError(bg, "add", fmt.Errorf("plugin type=\"bridge\" failed (add): %w", &types.Error{Code: types.ErrInternal, Msg: "no IP addresses available in range set"}))
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "no IP addresses available") {
		t.Errorf("plugin failure: %v", err)
	}
	if err := cniError(bg, "add", errors.New(`failed to find plugin "x" in path [/opt/cni/bin]`)); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("missing plugin: %v", err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := cniError(ctx, "add", errors.New("signal: killed")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// Network names may contain '-', so a cache file name alone does not say
// which pod it belongs to; the IDs inside it do.
func TestCachedNetworks(t *testing.T) {
	cache := t.TempDir()
	m := NewManager(ManagerOptions{CacheDir: cache})
	results := filepath.Join(cache, "results")
	if err := os.MkdirAll(results, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(network, id, ifName string) {
		data, _ := json.Marshal(map[string]any{"kind": "cniCacheV1", "containerId": id, "ifName": ifName, "networkName": network})
		if err := os.WriteFile(filepath.Join(results, network+"-"+id+"-"+ifName), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pod-net", "abc", "eth0")
	write("other", "abc", "eth0")
	write("pod-net-x", "y-abc", "eth0") // file name ends in -abc-eth0, but the pod is y-abc
	write("pod-net", "abc", "net1")
	write("pod-net", "xabc", "eth0")
	got, err := m.cachedNetworks("abc")
	if err != nil || !slices.Equal(got, []string{"other", "pod-net"}) {
		t.Fatalf("cachedNetworks = %v, %v", got, err)
	}
	if got, err := NewManager(ManagerOptions{CacheDir: filepath.Join(cache, "absent")}).cachedNetworks("abc"); err != nil || got != nil {
		t.Fatalf("missing cache dir: %v, %v", got, err)
	}
}
