package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-runtime/berth/internal/atomicfile"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Names of the per-pod files inside the pod's directory.
const (
	resolvConfName = "resolv.conf"
	hostnameName   = "hostname"
	hostsName      = "hosts"
	shmName        = "shm"
)

// Limits kubelet and the API server apply to search paths; a runtime that
// accepts more writes a resolv.conf the pod's resolver may truncate.
const (
	maxDNSSearches    = 32
	maxDNSSearchChars = 2048
)

// defaultShmSize is the pod's /dev/shm size when none is configured, the
// same as containerd's and Docker's.
const defaultShmSize = 64 << 20

// DNSConfig is the pod's resolver configuration.
type DNSConfig struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

func (d *DNSConfig) empty() bool {
	return d == nil || len(d.Servers) == 0 && len(d.Searches) == 0 && len(d.Options) == 0
}

// PodFilesOptions describe the files a pod's containers share.
type PodFilesOptions struct {
	// Hostname goes into the hostname file and /etc/hosts. Empty means the
	// host's hostname, as containerd does: kubelet leaves it empty for
	// host-network pods.
	Hostname string
	// DNS nil or completely empty means a copy of the host's resolv.conf.
	// kubelet sends the host's settings itself for dnsPolicy Default, so an
	// empty config only comes from clients that want the node's resolver.
	DNS *DNSConfig
	// IPs are the pod's addresses, each listed with the hostname in hosts.
	IPs []string
	// HostNetwork pods get a copy of the host's hosts file instead: they
	// share the host's addresses, so the host's names are the right ones.
	HostNetwork bool
	// ShmSize is the size of the pod's /dev/shm in bytes; 0 means 64 MiB.
	ShmSize int64
	// HostIPC pods use the host's /dev/shm, so no tmpfs is mounted.
	HostIPC bool
	// HostResolvConf and HostHosts are the host files copied; empty means
	// /etc/resolv.conf and /etc/hosts. Tests point them elsewhere.
	HostResolvConf string
	HostHosts      string
}

// PodFiles are the paths of a pod's shared files, bind-mounted into its
// containers.
type PodFiles struct {
	ResolvConf string `json:"resolv_conf,omitempty"`
	Hostname   string `json:"hostname,omitempty"`
	Hosts      string `json:"hosts,omitempty"`
	// Shm is "" for host-IPC pods: their containers use the host's /dev/shm.
	Shm string `json:"shm,omitempty"`
}

// WritePodFiles writes the pod's resolv.conf, hostname and hosts files into
// dir (which must exist), each atomically with mode 0644, and mounts a tmpfs
// at dir/shm to serve as the pod's /dev/shm unless the pod uses the host's
// IPC namespace. Invalid options are errdefs.ErrInvalidArgument naming the
// value and are caught before anything is written; on any failure nothing
// this call made is left behind.
func WritePodFiles(dir string, opts PodFilesOptions) (_ PodFiles, retErr error) {
	if dir == "" {
		return PodFiles{}, fmt.Errorf("%w: pod files need a directory", errdefs.ErrInvalidArgument)
	}
	shmSize := opts.ShmSize
	if shmSize < 0 {
		return PodFiles{}, fmt.Errorf("%w: shm size %d is negative", errdefs.ErrInvalidArgument, shmSize)
	}
	if shmSize == 0 {
		shmSize = defaultShmSize
	}
	hostname := opts.Hostname
	if hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return PodFiles{}, fmt.Errorf("read the host's hostname: %w", err)
		}
		hostname = h
	} else if err := validateHostname(hostname); err != nil {
		return PodFiles{}, err
	}
	resolv, err := resolvConf(opts)
	if err != nil {
		return PodFiles{}, err
	}
	hosts, err := hostsFile(opts, hostname)
	if err != nil {
		return PodFiles{}, err
	}

	files := PodFiles{
		ResolvConf: filepath.Join(dir, resolvConfName),
		Hostname:   filepath.Join(dir, hostnameName),
		Hosts:      filepath.Join(dir, hostsName),
	}
	// made records only what this call made, for the cleanup on failure.
	var made []string
	var mounted bool
	defer func() {
		if retErr == nil {
			return
		}
		if mounted {
			if err := unmountAll(files.Shm); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("clean up: %w", err))
			}
		}
		for _, p := range made {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				retErr = errors.Join(retErr, fmt.Errorf("clean up: %w", err))
			}
		}
	}()

	if !opts.HostIPC {
		files.Shm = filepath.Join(dir, shmName)
		err := os.Mkdir(files.Shm, 0o755)
		if err == nil {
			made = append(made, files.Shm)
		} else if !errors.Is(err, fs.ErrExist) {
			return PodFiles{}, fmt.Errorf("create shm mount point: %w", err)
		}
		// A second tmpfs would hide the first, and its user, for good.
		if m, err := mountinfo.Mounted(files.Shm); err != nil {
			return PodFiles{}, fmt.Errorf("check shm mount point: %w", err)
		} else if m {
			return PodFiles{}, fmt.Errorf("%w: %s is already mounted", errdefs.ErrAlreadyExists, files.Shm)
		}
		// nosuid, nodev and noexec are mount flags, not tmpfs options:
		// tmpfs refuses them in the data string.
		data := "mode=1777,size=" + strconv.FormatInt(shmSize, 10)
		if err := unix.Mount("shm", files.Shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
			return PodFiles{}, fmt.Errorf("mount the pod's shm tmpfs (%s) at %s: %w", data, files.Shm, err)
		}
		mounted = true
	}

	for _, f := range []struct {
		path    string
		content string
	}{
		{files.ResolvConf, resolv},
		{files.Hostname, hostname + "\n"},
		{files.Hosts, hosts},
	} {
		// Recorded before the write: atomicfile replaces an old file too,
		// and a half-done pod must not keep a mix of old and new files.
		made = append(made, f.path)
		if err := atomicfile.WriteFile(f.path, []byte(f.content), 0o644); err != nil {
			return PodFiles{}, err
		}
	}
	return files, nil
}

// resolvConf returns the pod's resolv.conf: the DNS config if one is given,
// else the host's file.
func resolvConf(opts PodFilesOptions) (string, error) {
	d := opts.DNS
	if d.empty() {
		return readHostFile(opts.HostResolvConf, "/etc/resolv.conf")
	}
	if err := validateDNS(d); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, s := range d.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(d.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.Searches, " "))
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return b.String(), nil
}

// validateDNS rejects what would make resolv.conf malformed: each value
// becomes one word of a line, so whitespace would split or end it.
func validateDNS(d *DNSConfig) error {
	for _, s := range d.Servers {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%w: DNS server %q is not an IP address", errdefs.ErrInvalidArgument, s)
		}
	}
	if len(d.Searches) > maxDNSSearches {
		return fmt.Errorf("%w: %d DNS search domains %q: at most %d are allowed",
			errdefs.ErrInvalidArgument, len(d.Searches), d.Searches, maxDNSSearches)
	}
	if n := len(strings.Join(d.Searches, " ")); n > maxDNSSearchChars {
		return fmt.Errorf("%w: DNS search list %q is %d characters long: at most %d are allowed",
			errdefs.ErrInvalidArgument, d.Searches, n, maxDNSSearchChars)
	}
	for _, s := range d.Searches {
		if !isResolvWord(s) {
			return fmt.Errorf("%w: DNS search domain %q is empty or contains whitespace", errdefs.ErrInvalidArgument, s)
		}
	}
	for _, o := range d.Options {
		if !isResolvWord(o) {
			return fmt.Errorf("%w: DNS option %q is empty or contains whitespace", errdefs.ErrInvalidArgument, o)
		}
	}
	return nil
}

func isResolvWord(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// managedHostsHeader and managedHosts open the hosts file kubelet would
// write for the pod; each pod IP follows, with the hostname.
const (
	managedHostsHeader = "# Kubernetes-managed hosts file (berth).\n"
	managedHosts       = "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"fe00::0\tip6-mcastprefix\n" +
		"fe00::1\tip6-allnodes\n" +
		"fe00::2\tip6-allrouters\n"
)

// hostsFile returns the pod's hosts file.
func hostsFile(opts PodFilesOptions, hostname string) (string, error) {
	if opts.HostNetwork {
		return readHostFile(opts.HostHosts, "/etc/hosts")
	}
	var b strings.Builder
	b.WriteString(managedHostsHeader)
	b.WriteString(managedHosts)
	for _, ip := range opts.IPs {
		addr, err := netip.ParseAddr(ip)
		if err != nil || addr.Zone() != "" {
			return "", fmt.Errorf("%w: pod IP %q is not an IP address", errdefs.ErrInvalidArgument, ip)
		}
		fmt.Fprintf(&b, "%s\t%s\n", addr, hostname)
	}
	return b.String(), nil
}

// readHostFile reads one of the host's files to copy into the pod. A missing
// file is empty: the resolver treats a missing and an empty resolv.conf (or
// hosts file) alike, and a host without one must still run pods.
func readHostFile(path, def string) (string, error) {
	if path == "" {
		path = def
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the host's %s: %w", filepath.Base(def), err)
	}
	return string(b), nil
}

// RemovePodFiles unmounts the pod's shm tmpfs and removes the files
// WritePodFiles made in dir, including temporary files a crash mid-write
// left. What is already gone counts as removed, so it can be repeated.
func RemovePodFiles(dir string) error {
	if dir == "" {
		// Relative names would resolve against the daemon's working
		// directory.
		return fmt.Errorf("%w: pod files need a directory", errdefs.ErrInvalidArgument)
	}
	shm := filepath.Join(dir, shmName)
	if err := unmountAll(shm); err != nil {
		return fmt.Errorf("remove pod files: %w", err)
	}
	var errs []error
	remove := func(p string) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pod files: %w", err))
		}
	}
	remove(shm)
	for _, name := range []string{resolvConfName, hostnameName, hostsName} {
		remove(filepath.Join(dir, name))
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove pod files: %w", err))
	}
	for _, e := range entries {
		for _, name := range []string{resolvConfName, hostnameName, hostsName} {
			// atomicfile's temporary files: ".<name>.tmp-<random>".
			if strings.HasPrefix(e.Name(), "."+name+".tmp-") {
				remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	return errors.Join(errs...)
}
