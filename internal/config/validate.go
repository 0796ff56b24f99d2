package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/distribution/reference"
)

// Origins says where each key's value came from, so an invalid value is
// reported against the flag or file an operator has to fix.
type Origins struct {
	// File is the config file that was read ("" when none was).
	File string
	// Flags maps a config key ("cni.conf_dir") to the flag that set it.
	Flags map[string]string
}

func (o Origins) of(key string) string {
	if flag, ok := o.Flags[key]; ok {
		return "flag --" + flag
	}
	if o.File != "" {
		return fmt.Sprintf("key %q in %s", key, o.File)
	}
	return fmt.Sprintf("key %q (built-in default)", key)
}

// Validate checks every value and reports all problems at once, each naming
// the key (or flag) and the file it came from.
func (c Config) Validate(o Origins) error {
	var errs []error
	bad := func(key, value, reason string) {
		errs = append(errs, fmt.Errorf("%s: %q %s", o.of(key), value, reason))
	}
	if c.Version != CurrentVersion {
		bad("version", strconv.Itoa(c.Version), fmt.Sprintf("is not a config format this berth reads (it reads version %d)", CurrentVersion))
	}
	if _, err := parseUnixURL(c.Listen); err != nil {
		bad("listen", c.Listen, err.Error())
	}
	if _, err := LookupGroup(c.ListenGroup); err != nil {
		bad("listen_group", c.ListenGroup, err.Error())
	}
	for key, dir := range map[string]string{
		"root":                      c.Root,
		"state":                     c.State,
		"cni.conf_dir":              c.CNI.ConfDir,
		"image.registry_config_dir": c.Image.RegistryConfigDir,
	} {
		if !filepath.IsAbs(dir) {
			bad(key, dir, "must be an absolute path")
		}
	}
	if c.Root != "" && filepath.Clean(c.Root) == filepath.Clean(c.State) {
		bad("state", c.State, "must differ from root: root keeps data across reboots, state does not")
	}
	if len(c.CNI.BinDirs) == 0 {
		bad("cni.bin_dirs", "", "must name at least one directory with CNI plugin binaries")
	}
	for _, dir := range c.CNI.BinDirs {
		if !filepath.IsAbs(dir) {
			bad("cni.bin_dirs", dir, "must be an absolute path")
		}
	}
	switch c.CgroupDriver {
	case CgroupDriverCgroupfs, CgroupDriverSystemd:
	default:
		bad("cgroup_driver", c.CgroupDriver, `is not a cgroup driver: use "cgroupfs" or "systemd" (the same as kubelet's cgroupDriver)`)
	}
	if d := c.ShutdownTimeout.Std(); d <= 0 {
		bad("shutdown_timeout", d.String(), "must be positive")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", c.Log.Level, `is not a log level: use "debug", "info", "warn" or "error"`)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", c.Log.Format, `is not a log format: use "text" or "json"`)
	}
	seen := map[string]bool{}
	for _, h := range c.Runtime.Handlers {
		if h == "" || strings.ContainsAny(h, " /\t") || seen[h] {
			bad("runtime.handlers", h, "must be distinct non-empty names without spaces or slashes (the default handler \"\" is always there)")
		}
		seen[h] = true
	}
	if p := c.Runtime.MonitorPath; p != "" && !filepath.IsAbs(p) {
		bad("runtime.monitor_path", p, "must be an absolute path")
	}
	if n := c.Runtime.PidsLimit; n < 0 {
		bad("runtime.pids_limit", strconv.FormatInt(n, 10), "must be 0 (unlimited) or more")
	}
	if p := c.Runtime.SeccompProfileRoot; p != "" && !filepath.IsAbs(p) {
		bad("runtime.seccomp_profile_root", p, "must be an absolute path")
	}
	if n := c.Runtime.ShmSizeBytes; n < 1<<20 {
		bad("runtime.shm_size_bytes", strconv.FormatInt(n, 10), "must be at least 1048576 (1 MiB)")
	}
	if n := c.Image.MaxConcurrentDownloads; n < 1 || n > 64 {
		bad("image.max_concurrent_downloads", strconv.Itoa(n), "must be between 1 and 64")
	}
	if d := c.Image.PullProgressTimeout.Std(); d <= 0 {
		bad("image.pull_progress_timeout", d.String(), "must be positive")
	}
	for _, ref := range c.Image.PinnedImages {
		if _, err := reference.ParseDockerRef(ref); err != nil {
			bad("image.pinned_images", ref, "is not an image reference: "+err.Error())
		}
	}
	if err := checkHostPort(c.Streaming.Address); err != nil {
		bad("streaming.address", c.Streaming.Address, err.Error())
	}
	if (c.Streaming.TLSCertFile == "") != (c.Streaming.TLSKeyFile == "") {
		bad("streaming.tls_cert_file", c.Streaming.TLSCertFile, "set both tls_cert_file and tls_key_file, or neither (a self-signed certificate is made)")
	}
	if c.Streaming.TLSCertFile != "" && !c.Streaming.EnableTLS {
		bad("streaming.tls_cert_file", c.Streaming.TLSCertFile, "is only used with enable_tls = true")
	}
	if c.Streaming.IdleTimeout < 0 {
		bad("streaming.idle_timeout", c.Streaming.IdleTimeout.Std().String(), "must not be negative (0 means no timeout)")
	}
	c.validateMetrics(bad)
	return errors.Join(errs...)
}

// validateMetrics checks [metrics]. Any address may serve /metrics (a
// Prometheus on another host scrapes it, as containerd's may), but pprof
// only a loopback one: a profile costs CPU and shows the daemon's memory.
func (c Config) validateMetrics(bad func(key, value, reason string)) {
	m := c.Metrics
	if m.Address == "" {
		if m.EnablePprof {
			bad("metrics.enable_pprof", "true", "needs metrics.address: pprof is served on the metrics address")
		}
		return
	}
	host, port, err := net.SplitHostPort(m.Address)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		bad("metrics.address", m.Address, `must be host:port with a port from 1 to 65535, such as "127.0.0.1:9323" ("" serves no metrics)`)
		return
	}
	if m.EnablePprof && !IsLoopbackHost(host) {
		bad("metrics.enable_pprof", "true", fmt.Sprintf("needs a loopback metrics.address (127.0.0.1, [::1] or localhost), not %q: "+
			"pprof lets any client profile the daemon and read its memory", m.Address))
	}
}

// IsLoopbackHost reports whether host (of a host:port) names only the
// loopback interface; "" and "0.0.0.0" are every interface.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseUnixURL returns the socket path of a unix:// URL.
func parseUnixURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "unix" {
		return "", errors.New(`must be a unix socket URL such as "unix:///run/berth/berth.sock"`)
	}
	path := u.Path
	if u.Host != "" { // unix://run/berth.sock: the first element parsed as a host
		return "", errors.New(`must be a unix URL with an absolute path: three slashes, as in "unix:///run/berth/berth.sock"`)
	}
	if !filepath.IsAbs(path) {
		return "", errors.New("must name an absolute socket path")
	}
	// sun_path holds 108 bytes including the terminating NUL.
	if len(path) > 107 {
		return "", fmt.Errorf("names a socket path of %d bytes; unix sockets allow at most 107", len(path))
	}
	return filepath.Clean(path), nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New(`must be host:port, such as "127.0.0.1:0" or "[::1]:10010"`)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return errors.New("has an invalid host")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return errors.New("has an invalid port: use 0 to 65535 (0 picks a free port)")
	}
	return nil
}

// LookupGroup resolves a group name or numeric GID; "" is -1 (no change).
func LookupGroup(g string) (int, error) {
	if g == "" {
		return -1, nil
	}
	if n, err := strconv.ParseUint(g, 10, 31); err == nil {
		return int(n), nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return -1, fmt.Errorf("is not a group of this host (/etc/group) nor a numeric GID")
	}
	n, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return -1, fmt.Errorf("has a non-numeric GID %q", grp.Gid)
	}
	return n, nil
}
