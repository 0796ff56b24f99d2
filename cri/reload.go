package cri

import (
	"context"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/berth-runtime/berth/network"
)

// Reload applies the reloadable image settings of cfg (a config that
// validated) to the running server, and rescans the CNI config directory.
// Requests in flight are not disturbed: a pull that already resolved keeps
// its registry hosts, the next one reads the new ones. Keys that need a
// restart are the caller's to report; the server keeps its startup values
// of those, and Status verbose shows the config in force: those startup
// values with the reloaded keys of cfg.
func (s *Server) Reload(ctx context.Context, cfg config.Config) {
	s.images.SetPinned(cfg.Image.PinnedImages)
	s.images.SetRegistryConfigDir(cfg.Image.RegistryConfigDir)
	effective := s.cfg.WithReloaded(cfg)
	s.effective.Store(&effective)
	s.rescanNetwork(ctx)
}

// effectiveConfig is the config in force: the startup config until the
// first reload.
func (s *Server) effectiveConfig() config.Config {
	if c := s.effective.Load(); c != nil {
		return *c
	}
	return s.cfg
}

// rescanNetwork reads the CNI config directory now and logs which network
// new pods join. It changes nothing by itself: the directory is read again
// at every Status and every pod's network setup, so a config installed
// since is already in use; the rescan tells the operator what it found.
func (s *Server) rescanNetwork(ctx context.Context) {
	pn, err := network.LoadPodNetwork(s.cfg.CNI.ConfDir, s.cfg.CNI.BinDirs)
	if err != nil {
		s.log.WarnContext(ctx, "CNI config rescanned: no usable pod network; new pods cannot start", "conf_dir", s.cfg.CNI.ConfDir, "error", err)
		return
	}
	s.log.InfoContext(ctx, "CNI config rescanned: new pods join this network", "conf_dir", s.cfg.CNI.ConfDir,
		"network", pn.Config.Name, "file", pn.File)
}
