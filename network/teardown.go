package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// Teardown runs CNI DEL for the pod, always, so its address and port
// mappings are released whatever state the pod is in:
//
//   - It replays what ADD used (network config, CNI args, capability args)
//     from libcni's cache when that is there, so a config changed or removed
//     since Setup still releases through the plugins that allocated.
//     Without a cache entry it uses the current config and a's fields.
//   - A namespace pin that is gone (or is a stale file) is passed as an
//     empty NetNS: plugins then skip the in-namespace work and still release
//     by container ID, as host-local does.
//   - One plugin failing does not stop the others: each is retried on its
//     own, and without the namespace, so IPAM still gets its DEL.
//
// Teardown is idempotent: a second call runs DEL again, which plugins treat
// as a no-op. If neither a cache entry nor a usable config exists there is
// nothing to replay; that is logged and is not an error, so a pod is never
// stuck undeletable on a node whose CNI config was removed.
func (m *Manager) Teardown(ctx context.Context, a Attachment) (retErr error) {
	start := time.Now()
	defer func() { m.observer.CNIDone(OpDel, time.Since(start), retErr) }()
	log := m.log.With("pod_id", a.PodID)
	if err := a.validate(); err != nil {
		return err
	}
	capArgs, err := a.capabilityArgs()
	if err != nil {
		// Setup refused this attachment before running any plugin, so
		// there is no port or shaping state to undo.
		log.WarnContext(ctx, "ignoring invalid attachment fields for CNI DEL", "error", err)
		capArgs = nil
	}
	netns := a.NetNSPath
	if !NetNSExists(netns) {
		netns = ""
	}
	rt := a.runtimeConf(netns, capArgs)

	lists := m.cachedLists(ctx, log, rt)
	fromCache := len(lists) > 0
	if !fromCache {
		pn, err := LoadPodNetwork(m.confDir, m.binDirs)
		if err != nil {
			log.WarnContext(ctx, "no cached CNI config for the pod and no usable CNI config; nothing to run DEL with", "error", err)
			return nil
		}
		_, hostPorts := capArgs["portMappings"]
		list, err := effectiveList(pn.Config, hostPorts)
		if err != nil {
			return fmt.Errorf("%w: CNI config %s: %v", errdefs.ErrFailedPrecondition, pn.File, err)
		}
		lists = []cachedList{{list: list, rt: rt}}
	}

	var errs []error
	for _, c := range lists {
		if err := m.del(ctx, c.list, c.rt); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.InfoContext(ctx, "pod network torn down", "from_cache", fromCache,
		"netns_gone", netns == "", "duration", time.Since(start))
	return nil
}

type cachedList struct {
	list *libcni.NetworkConfigList
	rt   *libcni.RuntimeConf
}

// cachedLists returns what libcni cached at ADD for this pod's eth0, in any
// network (the config may have been renamed since). Unreadable entries are
// logged and skipped; the caller then falls back to the current config.
func (m *Manager) cachedLists(ctx context.Context, log *slog.Logger, rt *libcni.RuntimeConf) []cachedList {
	names, err := m.cachedNetworks(rt.ContainerID)
	if err != nil {
		log.WarnContext(ctx, "cannot read the CNI cache; using the current config for DEL", "error", err)
		return nil
	}
	var out []cachedList
	for _, name := range names {
		conf, crt, err := m.cni.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: name}, rt)
		if err == nil && conf == nil {
			err = errors.New("no cached config")
		}
		var list *libcni.NetworkConfigList
		if err == nil {
			list, err = libcni.NetworkConfFromBytes(conf)
		}
		if err == nil && len(list.Plugins) == 0 {
			err = errors.New("cached config lists no plugins")
		}
		if err != nil {
			log.WarnContext(ctx, "unusable CNI cache entry", "network", name, "error", err)
			continue
		}
		out = append(out, cachedList{list: list, rt: crt})
	}
	return out
}

// cacheRoot mirrors libcni's choice of cache directory.
func (m *Manager) cacheRoot() string {
	if m.cacheDir != "" {
		return m.cacheDir
	}
	return libcni.CacheDir
}

// cacheFile is libcni's cache entry for a network attachment (libcni keeps
// the layout results/<network>-<container ID>-<ifname> since CNI 0.4).
func (m *Manager) cacheFile(network, containerID string) string {
	return filepath.Join(m.cacheRoot(), "results", network+"-"+containerID+"-"+podIfName)
}

// cachedNetworks lists the networks with a cache entry for the pod. The file
// name alone is ambiguous (network names may contain '-'), so each candidate
// is confirmed by the IDs recorded inside it.
func (m *Manager) cachedNetworks(podID string) ([]string, error) {
	dir := filepath.Join(m.cacheRoot(), "results")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	suffix := "-" + podID + "-" + podIfName
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), suffix) || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var head struct {
			ContainerID string `json:"containerId"`
			IfName      string `json:"ifName"`
			NetworkName string `json:"networkName"`
		}
		if json.Unmarshal(data, &head) != nil || head.ContainerID != podID || head.IfName != podIfName ||
			head.NetworkName+suffix != e.Name() {
			continue
		}
		names = append(names, head.NetworkName)
	}
	sort.Strings(names)
	return names, nil
}

// del runs DEL for list. libcni stops at the first plugin that fails, which
// would leave the ones before it in the list (IPAM, through the main plugin)
// holding the pod's address; so after a failure each plugin gets its own
// DEL, and a plugin that fails with the namespace is retried without it.
func (m *Manager) del(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	err := m.cni.DelNetworkList(ctx, list, rt)
	if err == nil || ctx.Err() != nil {
		if err != nil {
			return cniError(ctx, "remove pod from CNI network "+list.Name, err)
		}
		return nil
	}
	m.log.WarnContext(ctx, "CNI DEL failed; retrying plugin by plugin", "pod_id", rt.ContainerID, "network", list.Name, "error", err)
	if err := m.delEach(ctx, list, rt); err != nil {
		return cniError(ctx, "remove pod from CNI network "+list.Name, err)
	}
	return nil
}

func (m *Manager) delEach(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	path := m.cacheFile(list.Name, rt.ContainerID)
	saved, readErr := os.ReadFile(path)
	// libcni removes the cache entry after every successful DEL, but each
	// plugin deserves the prevResult ADD produced, and if any plugin fails
	// the entry must survive for the next Teardown to replay.
	restore := func() {
		if readErr == nil {
			_ = os.WriteFile(path, saved, 0o600)
		}
	}
	var errs []error
	for i := len(list.Plugins) - 1; i >= 0; i-- {
		one := &libcni.NetworkConfigList{
			Name: list.Name, CNIVersion: list.CNIVersion,
			Plugins: list.Plugins[i : i+1], Bytes: list.Bytes,
		}
		restore()
		err := m.cni.DelNetworkList(ctx, one, rt)
		if err != nil && rt.NetNS != "" && ctx.Err() == nil {
			noNS := *rt
			noNS.NetNS = ""
			err = m.cni.DelNetworkList(ctx, one, &noNS)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		restore()
		return errors.Join(errs...)
	}
	_ = os.Remove(path)
	return nil
}
