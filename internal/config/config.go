// Package config defines Berth's configuration: the TOML file, its defaults,
// strict loading (an unknown key, a wrong type or an invalid value is an error
// that names the key and where it came from) and the flag overrides.
package config

import (
	"encoding/json"
	"time"
)

// Default locations. They match what kubelet users expect of a node runtime.
const (
	DefaultConfigFile             = "/etc/berth/berth.toml"
	DefaultListen                 = "unix:///run/berth/berth.sock"
	DefaultRoot                   = "/var/lib/berth"
	DefaultState                  = "/run/berth"
	DefaultRegistryConfigDir      = "/etc/berth/certs.d"
	DefaultCNIConfDir             = "/etc/cni/net.d"
	DefaultStreamingAddress       = "127.0.0.1:0"
	DefaultStreamIdleTimeout      = 4 * time.Hour
	DefaultShutdownTimeout        = 10 * time.Second
	DefaultMaxConcurrentDownloads = 3
	DefaultShmSizeBytes           = 64 << 20
	DefaultPullProgressTimeout    = time.Minute
	DefaultSeccompProfileRoot     = "/var/lib/kubelet/seccomp"

	// CurrentVersion is the config format version this build reads. A file
	// written for a later format is refused rather than half understood.
	CurrentVersion = 1
)

// Cgroup drivers.
const (
	CgroupDriverCgroupfs = "cgroupfs"
	CgroupDriverSystemd  = "systemd"
)

// DefaultCNIBinDirs are searched in order for CNI plugin binaries: the
// upstream location first, then Debian's containernetworking-plugins package.
func DefaultCNIBinDirs() []string { return []string{"/opt/cni/bin", "/usr/lib/cni"} }

// Config is the effective configuration of the daemon. Every field is
// documented in docs/config.md; keep the two in step.
type Config struct {
	// Version of the config format; 0 (unset) means CurrentVersion.
	Version int `toml:"version" json:"version"`
	// Listen is the CRI endpoint as a unix:// URL.
	Listen string `toml:"listen" json:"listen"`
	// ListenGroup owns the socket (a group name or numeric GID), so its
	// members may use the CRI without root; "" keeps root's group.
	ListenGroup string `toml:"listen_group" json:"listen_group"`
	// Root holds persistent data (images, metadata).
	Root string `toml:"root" json:"root"`
	// State holds runtime state that does not survive a reboot.
	State string `toml:"state" json:"state"`
	// CgroupDriver is "cgroupfs" or "systemd"; it must match kubelet's.
	CgroupDriver string `toml:"cgroup_driver" json:"cgroup_driver"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight RPCs.
	ShutdownTimeout Duration `toml:"shutdown_timeout" json:"shutdown_timeout"`

	Runtime   RuntimeConfig   `toml:"runtime" json:"runtime"`
	Log       LogConfig       `toml:"log" json:"log"`
	CNI       CNIConfig       `toml:"cni" json:"cni"`
	Image     ImageConfig     `toml:"image" json:"image"`
	Streaming StreamingConfig `toml:"streaming" json:"streaming"`
	Metrics   MetricsConfig   `toml:"metrics" json:"metrics"`
}

// RuntimeConfig configures how pods and containers run.
type RuntimeConfig struct {
	// Handlers are the RuntimeClass handler names this node accepts besides
	// the default (""); each runs containers with libcontainer.
	Handlers []string `toml:"handlers" json:"handlers"`
	// ShmSizeBytes is the size of each pod's /dev/shm tmpfs.
	ShmSizeBytes int64 `toml:"shm_size_bytes" json:"shm_size_bytes"`
	// MonitorPath is the berth-monitor binary; "" finds it next to the
	// berth binary, then in $PATH.
	MonitorPath string `toml:"monitor_path" json:"monitor_path"`
	// PidsLimit is the pids.max of containers that ask for none; 0 means
	// unlimited.
	PidsLimit int64 `toml:"pids_limit" json:"pids_limit"`
	// SeccompProfileRoot is where relative Localhost seccomp profiles are.
	SeccompProfileRoot string `toml:"seccomp_profile_root" json:"seccomp_profile_root"`
}

// LogConfig configures the daemon's structured log on stderr.
type LogConfig struct {
	Level  string `toml:"level" json:"level"`   // debug, info, warn, error
	Format string `toml:"format" json:"format"` // text or json
}

// CNIConfig says where pod network configs and plugin binaries are.
type CNIConfig struct {
	ConfDir string   `toml:"conf_dir" json:"conf_dir"`
	BinDirs []string `toml:"bin_dirs" json:"bin_dirs"`
}

// ImageConfig configures image pulls.
type ImageConfig struct {
	// RegistryConfigDir uses containerd's certs.d/<host>/hosts.toml layout.
	RegistryConfigDir string `toml:"registry_config_dir" json:"registry_config_dir"`
	// MaxConcurrentDownloads bounds the layers one pull fetches at once.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads" json:"max_concurrent_downloads"`
	// PullProgressTimeout cancels a pull that receives no data for this long.
	PullProgressTimeout Duration `toml:"pull_progress_timeout" json:"pull_progress_timeout"`
	// PinnedImages are never removed by kubelet's image garbage collection.
	PinnedImages []string `toml:"pinned_images" json:"pinned_images"`
}

// StreamingConfig configures the exec/attach/port-forward server.
type StreamingConfig struct {
	// Address is host:port; port 0 picks a free port at start.
	Address string `toml:"address" json:"address"`
	// EnableTLS serves https: with TLSCertFile and TLSKeyFile, or else with
	// a self-signed certificate made at start (as containerd does).
	EnableTLS   bool   `toml:"enable_tls" json:"enable_tls"`
	TLSCertFile string `toml:"tls_cert_file" json:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file" json:"tls_key_file"`
	// IdleTimeout closes a stream with no traffic for that long.
	IdleTimeout Duration `toml:"idle_timeout" json:"idle_timeout"`
}

// MetricsConfig configures the Prometheus endpoint (and pprof beside it).
type MetricsConfig struct {
	// Address is host:port of the http server of /metrics; "" (the
	// default) serves none, as containerd's [metrics] address.
	Address string `toml:"address" json:"address"`
	// EnablePprof serves net/http/pprof under /debug/pprof/ on Address.
	// It may profile the daemon at will, so only a loopback Address may
	// have it.
	EnablePprof bool `toml:"enable_pprof" json:"enable_pprof"`
}

// Default returns the configuration used when no file and no flags say otherwise.
func Default() Config {
	return Config{
		Version:         CurrentVersion,
		Listen:          DefaultListen,
		Root:            DefaultRoot,
		State:           DefaultState,
		CgroupDriver:    CgroupDriverCgroupfs,
		ShutdownTimeout: Duration(DefaultShutdownTimeout),
		Runtime: RuntimeConfig{
			Handlers: []string{"runc"}, ShmSizeBytes: DefaultShmSizeBytes, MonitorPath: "",
			PidsLimit: 0, SeccompProfileRoot: DefaultSeccompProfileRoot,
		},
		Log: LogConfig{Level: "info", Format: "text"},
		CNI: CNIConfig{ConfDir: DefaultCNIConfDir, BinDirs: DefaultCNIBinDirs()},
		Image: ImageConfig{
			RegistryConfigDir:      DefaultRegistryConfigDir,
			MaxConcurrentDownloads: DefaultMaxConcurrentDownloads,
			PullProgressTimeout:    Duration(DefaultPullProgressTimeout),
			PinnedImages:           []string{},
		},
		Streaming: StreamingConfig{Address: DefaultStreamingAddress, IdleTimeout: Duration(DefaultStreamIdleTimeout)},
	}
}

// SocketPath is the filesystem path of the unix socket in Listen. It is only
// meaningful for a validated config.
func (c Config) SocketPath() string {
	path, _ := parseUnixURL(c.Listen)
	return path
}

// JSON renders the config for Status(verbose) and logs.
func (c Config) JSON() string {
	b, err := json.Marshal(c)
	if err != nil { // cannot happen: the struct holds only plain values
		return "{}"
	}
	return string(b)
}

// Duration is a time.Duration written as a Go duration string ("10s", "1m30s").
type Duration time.Duration

// UnmarshalText parses a duration string such as "10s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return &ValueError{Value: string(b), Reason: `not a duration: write it like "10s" or "1m30s"`}
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
