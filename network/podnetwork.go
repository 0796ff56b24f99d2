package network

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// PodNetwork is the CNI network that pods join.
type PodNetwork struct {
	// File is the config file it was read from.
	File string
	// Config is the parsed network list (a single .conf is up-converted).
	Config *libcni.NetworkConfigList
}

// LoadPodNetwork picks the pod network the way kubelet users expect: the
// first config in confDir, by file name, that parses and whose plugins are all
// installed in binDirs. Files that fail are skipped; if none is usable the
// error (errdefs.ErrNotFound) lists why each was passed over, so an operator
// can fix the right file.
func LoadPodNetwork(confDir string, binDirs []string) (*PodNetwork, error) {
	files, err := libcni.ConfFiles(confDir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, fmt.Errorf("%w: read CNI config directory %s: %v", errdefs.ErrNotFound, confDir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no CNI network config in %s: install one (for example contrib/cni/10-berth-bridge.conflist) or point cni.conf_dir at yours",
			errdefs.ErrNotFound, confDir)
	}
	// libcni.ConfFiles returns os.ReadDir order, which is sorted by name.
	var skipped []string
	for _, file := range files {
		list, err := loadConfFile(file)
		if err == nil {
			err = checkPlugins(list, binDirs)
		}
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", filepath.Base(file), err))
			continue
		}
		return &PodNetwork{File: file, Config: list}, nil
	}
	return nil, fmt.Errorf("%w: no usable CNI network config in %s (%s)", errdefs.ErrNotFound, confDir, strings.Join(skipped, "; "))
}

func loadConfFile(file string) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(file, ".conflist") {
		return libcni.NetworkConfFromFile(file)
	}
	// A .conf or .json file holds a single plugin config.
	conf, err := libcni.ConfFromFile(file) //nolint:staticcheck // single-plugin files are still what many nodes ship
	if err != nil {
		return nil, err
	}
	if conf.Network.Type == "" {
		return nil, errors.New(`it has no "type": it is not a single-plugin network config`)
	}
	return libcni.ConfListFromConf(conf)
}

func checkPlugins(list *libcni.NetworkConfigList, binDirs []string) error {
	if len(list.Plugins) == 0 {
		return errors.New("it lists no plugins")
	}
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, binDirs); err != nil {
			return fmt.Errorf("plugin %q is not installed in %s", p.Network.Type, strings.Join(binDirs, " or "))
		}
	}
	return nil
}
