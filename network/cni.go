package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	ConfDir string   // CNI network configs (/etc/cni/net.d)
	BinDirs []string // CNI plugin binaries, searched in order
	// CacheDir is libcni's cache of what each ADD used and returned
	// (<root>/network/cni-cache, so that it survives a reboot); DEL replays it. "" is libcni's /var/lib/cni.
	CacheDir string
	Log      *slog.Logger
	// Observer, if set, is told the duration and outcome of every Setup
	// and Teardown (metrics).
	Observer Observer
}

// Manager attaches pods to the pod network and detaches them through libcni.
// It is safe for concurrent use by different pods; calls for the same pod
// must be serialized by the caller (the sandbox layer holds a per-pod lock).
type Manager struct {
	confDir  string
	binDirs  []string
	cacheDir string
	cni      *libcni.CNIConfig
	log      *slog.Logger
	observer Observer
}

// NewManager returns a Manager. It reads nothing yet: the network config is
// loaded at every Setup, so a config installed or changed after berth
// started is picked up without a restart.
func NewManager(opts ManagerOptions) *Manager {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	binDirs := append([]string(nil), opts.BinDirs...)
	// An explicit Exec: libcni fills a nil one lazily on first use, which
	// is a data race when the first two pods start concurrently.
	exec := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: stderrLogger{log}},
		PluginDecoder: version.PluginDecoder{},
	}
	observer := opts.Observer
	if observer == nil {
		observer = nopObserver{}
	}
	return &Manager{
		confDir:  opts.ConfDir,
		binDirs:  binDirs,
		cacheDir: opts.CacheDir,
		cni:      libcni.NewCNIConfigWithCacheDir(binDirs, opts.CacheDir, exec),
		log:      log,
		observer: observer,
	}
}

// Ready reports whether pods can be attached: nil, or why no CNI network
// config in ConfDir is usable (errdefs.ErrNotFound, from LoadPodNetwork).
func (m *Manager) Ready() error {
	_, err := LoadPodNetwork(m.confDir, m.binDirs)
	return err
}

// Result is what Setup gave the pod.
type Result struct {
	// IPs are the pod's addresses, primary first: the first IPv4 if there
	// is one, else the first IPv6 (what kubelet reports as status.podIP).
	IPs []netip.Addr
	// NetworkName is the CNI network the pod joined.
	NetworkName string
	// Raw is the CNI result as the last plugin returned it.
	Raw json.RawMessage
}

// Setup runs CNI ADD for the pod's eth0 in its pinned namespace. If ADD
// fails, whatever it did is undone with DEL (best effort) so no address
// leaks, and the error carries the plugin's message.
func (m *Manager) Setup(ctx context.Context, a Attachment) (_ *Result, retErr error) {
	start := time.Now()
	defer func() { m.observer.CNIDone(OpAdd, time.Since(start), retErr) }()
	log := m.log.With("pod_id", a.PodID)
	if err := a.validate(); err != nil {
		return nil, err
	}
	if !NetNSExists(a.NetNSPath) {
		return nil, fmt.Errorf("%w: pod network namespace %q is not pinned", errdefs.ErrFailedPrecondition, a.NetNSPath)
	}
	capArgs, err := a.capabilityArgs()
	if err != nil {
		return nil, err
	}
	pn, err := LoadPodNetwork(m.confDir, m.binDirs)
	if err != nil {
		return nil, fmt.Errorf("%w: pod network not ready: %v", errdefs.ErrFailedPrecondition, err)
	}
	_, hostPorts := capArgs["portMappings"]
	list, err := effectiveList(pn.Config, hostPorts)
	if err != nil {
		return nil, fmt.Errorf("%w: CNI config %s: %v", errdefs.ErrFailedPrecondition, pn.File, err)
	}
	rt := a.runtimeConf(a.NetNSPath, capArgs)

	res, err := m.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		addErr := cniError(ctx, "add pod to CNI network "+list.Name, err)
		log.WarnContext(ctx, "CNI ADD failed; undoing it", "network", list.Name, "error", err)
		// Undo with a context of our own: if ADD failed because ctx
		// expired, the cleanup must still get to release the address.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := m.del(dctx, list, rt); derr != nil {
			log.ErrorContext(ctx, "CNI DEL after failed ADD failed; Teardown will run it again", "network", list.Name, "error", derr)
		}
		return nil, addErr
	}
	out, err := toResult(list.Name, res)
	if err != nil {
		// The plugins succeeded but returned nothing usable: undo as
		// above, the pod cannot run without knowing its address.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_ = m.del(dctx, list, rt)
		return nil, err
	}
	log.InfoContext(ctx, "pod network set up", "network", list.Name, "ips", out.IPs,
		"plugins", pluginTypes(list), "duration", time.Since(start))
	return out, nil
}

// cleanupTimeout bounds a DEL run on the caller's behalf after its context
// is gone; DEL with iptables work takes well under a second.
const cleanupTimeout = 30 * time.Second

// effectiveList is the list this pod runs. Without host ports, plugins that
// serve nothing but portMappings are dropped: portmap costs ~40 ms per ADD
// and ~75 ms per DEL even with nothing to map. The returned list's Bytes
// hold exactly its plugins, inlined, because libcni caches Bytes at ADD and
// Teardown replays that cache: DEL then runs exactly what ADD ran.
func effectiveList(list *libcni.NetworkConfigList, hostPorts bool) (*libcni.NetworkConfigList, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(list.Bytes, &top); err != nil {
		return nil, err
	}
	plugins := make([]json.RawMessage, 0, len(list.Plugins))
	for _, p := range list.Plugins {
		if !hostPorts && onlyServesPortMappings(p) {
			continue
		}
		plugins = append(plugins, json.RawMessage(p.Bytes))
	}
	if len(plugins) == 0 {
		return nil, errors.New("it has no plugin but port mapping ones")
	}
	var err error
	if top["plugins"], err = json.Marshal(plugins); err != nil {
		return nil, err
	}
	// Plugins loaded from <confDir>/<name>/*.conf are inlined above; do
	// not let a re-parse of the cache load them a second time.
	top["loadOnlyInlinedPlugins"] = json.RawMessage("true")
	// A list up-converted from a .conf may have had its version in the
	// plugin only; keep the version libcni settled on.
	if list.CNIVersion != "" {
		top["cniVersion"], _ = json.Marshal(list.CNIVersion)
	}
	b, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(b)
}

func onlyServesPortMappings(p *libcni.PluginConfig) bool {
	if p.Network.Type == "portmap" {
		return true
	}
	n := 0
	for c, on := range p.Network.Capabilities {
		if on {
			if c != "portMappings" {
				return false
			}
			n++
		}
	}
	return n > 0
}

func pluginTypes(list *libcni.NetworkConfigList) []string {
	out := make([]string, 0, len(list.Plugins))
	for _, p := range list.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}

// toResult converts a plugin result of any CNI version.
func toResult(network string, res types.Result) (*Result, error) {
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("CNI network %s returned a result berth cannot encode: %w", network, err)
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("%w: CNI network %s returned a result berth cannot read: %v", errdefs.ErrFailedPrecondition, network, err)
	}
	var v4, v6 []netip.Addr
	for _, ipc := range cur.IPs {
		addr, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		if addr.Is4() {
			v4 = append(v4, addr)
		} else {
			v6 = append(v6, addr)
		}
	}
	if len(v4)+len(v6) == 0 {
		return nil, fmt.Errorf("%w: CNI network %s gave the pod no IP address", errdefs.ErrFailedPrecondition, network)
	}
	return &Result{IPs: primaryFirst(cur.IPs, v4, v6), NetworkName: network, Raw: raw}, nil
}

// primaryFirst orders the addresses as plugins returned them, except that
// the first IPv4 (or, without IPv4, the first IPv6) leads.
func primaryFirst(ips []*current.IPConfig, v4, v6 []netip.Addr) []netip.Addr {
	var primary netip.Addr
	if len(v4) > 0 {
		primary = v4[0]
	} else {
		primary = v6[0]
	}
	out := []netip.Addr{primary}
	for _, ipc := range ips {
		addr, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		if addr = addr.Unmap(); addr != primary {
			out = append(out, addr)
		}
	}
	return out
}

// cniError gives a plugin failure an errdefs type. A broken network config
// is the node's problem (FailedPrecondition); everything else, including
// "try again later" and an exhausted address range, is Unavailable: kubelet
// retries the pod. If ctx ended, the error wraps ctx.Err() instead, so the
// CRI layer reports DeadlineExceeded or Canceled.
func cniError(ctx context.Context, what string, err error) error {
	// A plugin killed because ctx ended reports only "signal: killed".
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w (%v)", what, cerr, err)
	}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		switch cniErr.Code {
		case types.ErrIncompatibleCNIVersion, types.ErrUnsupportedField, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig:
			return fmt.Errorf("%w: %s: %v", errdefs.ErrFailedPrecondition, what, err)
		}
		return fmt.Errorf("%w: %s: %v", errdefs.ErrUnavailable, what, err)
	}
	if strings.Contains(err.Error(), "failed to find plugin") {
		return fmt.Errorf("%w: %s: %v", errdefs.ErrFailedPrecondition, what, err)
	}
	return fmt.Errorf("%w: %s: %v", errdefs.ErrUnavailable, what, err)
}

// stderrLogger sends what plugins write to stderr (diagnostics that never
// reach the result) to the daemon's log instead of its raw stderr.
type stderrLogger struct{ log *slog.Logger }

func (w stderrLogger) Write(p []byte) (int, error) {
	if msg := strings.TrimSpace(string(p)); msg != "" {
		w.log.Info("CNI plugin stderr", "output", msg)
	}
	return len(p), nil
}
