package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// hostFiles writes stand-ins for the host's resolv.conf and hosts.
func hostFiles(t *testing.T) (resolv, hosts string) {
	t.Helper()
	d := t.TempDir()
	resolv, hosts = filepath.Join(d, "resolv.conf"), filepath.Join(d, "hosts")
	if err := os.WriteFile(resolv, []byte("# host resolver\nnameserver 192.0.2.53\nsearch corp.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n192.0.2.10 node-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return resolv, hosts
}

// assertFile checks a pod file's content and mode.
func assertFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s:\n%s\nwant:\n%s", filepath.Base(path), got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o644 {
		t.Errorf("%s has mode %v, want 0644", path, st.Mode())
	}
}

const wantManagedHosts = "# Kubernetes-managed hosts file (berth).\n" +
	"127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"fe00::0\tip6-mcastprefix\n" +
	"fe00::1\tip6-allnodes\n" +
	"fe00::2\tip6-allrouters\n"

// These tests use HostIPC so that they need no mount, hence no root.

func TestWritePodFilesDNSConfig(t *testing.T) {
	hostResolv, hostHosts := hostFiles(t)
	dir := t.TempDir()
	files, err := WritePodFiles(dir, PodFilesOptions{
		Hostname: "web-0",
		DNS: &DNSConfig{
			Servers:  []string{"10.96.0.10", "fd00::10"},
			Searches: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options:  []string{"ndots:5", "edns0"},
		},
		IPs:     []string{"10.244.1.5", "fd00:10:244:1::5"},
		HostIPC: true, HostResolvConf: hostResolv, HostHosts: hostHosts,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := PodFiles{
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		Hostname:   filepath.Join(dir, "hostname"),
		Hosts:      filepath.Join(dir, "hosts"),
	}
	if files != want {
		t.Fatalf("PodFiles = %+v, want %+v", files, want)
	}
	assertFile(t, files.ResolvConf, "nameserver 10.96.0.10\nnameserver fd00::10\n"+
		"search default.svc.cluster.local svc.cluster.local cluster.local\n"+
		"options ndots:5 edns0\n")
	assertFile(t, files.Hostname, "web-0\n")
	assertFile(t, files.Hosts, wantManagedHosts+"10.244.1.5\tweb-0\nfd00:10:244:1::5\tweb-0\n")

	if err := RemovePodFiles(dir); err != nil {
		t.Fatal(err)
	}
	assertNothingIn(t, dir)
}

func TestWritePodFilesCopiesHostResolvConf(t *testing.T) {
	hostResolv, hostHosts := hostFiles(t)
	want, err := os.ReadFile(hostResolv)
	if err != nil {
		t.Fatal(err)
	}
	for name, dns := range map[string]*DNSConfig{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			files, err := WritePodFiles(dir, PodFilesOptions{
				Hostname: "web-0", DNS: dns, HostIPC: true, HostResolvConf: hostResolv, HostHosts: hostHosts,
			})
			if err != nil {
				t.Fatal(err)
			}
			assertFile(t, files.ResolvConf, string(want))
			// No pod IPs yet: the hosts file still has the standard entries.
			assertFile(t, files.Hosts, wantManagedHosts)
		})
	}

	// A host without resolv.conf still runs pods, with an empty one.
	dir := t.TempDir()
	files, err := WritePodFiles(dir, PodFilesOptions{
		Hostname: "web-0", HostIPC: true, HostResolvConf: filepath.Join(dir, "missing"), HostHosts: hostHosts,
	})
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, files.ResolvConf, "")
}

func TestWritePodFilesHostNetwork(t *testing.T) {
	hostResolv, hostHosts := hostFiles(t)
	wantHosts, err := os.ReadFile(hostHosts)
	if err != nil {
		t.Fatal(err)
	}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// kubelet sends no hostname for host-network pods.
	files, err := WritePodFiles(dir, PodFilesOptions{
		HostNetwork: true, HostIPC: true, IPs: []string{"192.0.2.10"},
		DNS:            &DNSConfig{Servers: []string{"192.0.2.53"}},
		HostResolvConf: hostResolv, HostHosts: hostHosts,
	})
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, files.Hosts, string(wantHosts))
	assertFile(t, files.Hostname, hostname+"\n")
	assertFile(t, files.ResolvConf, "nameserver 192.0.2.53\n")
}

func TestWritePodFilesInvalid(t *testing.T) {
	hostResolv, hostHosts := hostFiles(t)
	long := make([]string, 0, 40)
	for range 40 {
		long = append(long, strings.Repeat("s", 60)+".example")
	}
	for _, tc := range []struct {
		name string
		opts PodFilesOptions
		want string // in the error message
	}{
		{"server name", PodFilesOptions{DNS: &DNSConfig{Servers: []string{"dns.example"}}}, "dns.example"},
		{"server with port", PodFilesOptions{DNS: &DNSConfig{Servers: []string{"10.0.0.1:53"}}}, "10.0.0.1:53"},
		{"search with space", PodFilesOptions{DNS: &DNSConfig{Searches: []string{"a b"}}}, "a b"},
		{"search with newline", PodFilesOptions{DNS: &DNSConfig{Searches: []string{"a\nnameserver 1.2.3.4"}}}, "nameserver 1.2.3.4"},
		{"too many searches", PodFilesOptions{DNS: &DNSConfig{Searches: long[:33]}}, "at most 32"},
		{"search list too long", PodFilesOptions{DNS: &DNSConfig{Searches: long[:32]}}, "at most 2048"},
		{"empty option", PodFilesOptions{DNS: &DNSConfig{Options: []string{""}}}, `""`},
		{"pod IP", PodFilesOptions{IPs: []string{"10.0.0.300"}}, "10.0.0.300"},
		{"hostname", PodFilesOptions{Hostname: "web_0"}, "web_0"},
		{"negative shm size", PodFilesOptions{ShmSize: -1}, "-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := tc.opts
			if opts.Hostname == "" {
				opts.Hostname = "web-0"
			}
			// Not HostIPC: a refusal must come before the shm mount too.
			opts.HostResolvConf, opts.HostHosts = hostResolv, hostHosts
			files, err := WritePodFiles(dir, opts)
			if !errdefs.IsInvalidArgument(err) {
				_ = RemovePodFiles(dir)
				t.Fatalf("got %+v, %v; want InvalidArgument", files, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			assertNothingIn(t, dir)
		})
	}
}

func TestWritePodFilesShm(t *testing.T) {
	podNSRequireRoot(t)
	hostResolv, hostHosts := hostFiles(t)
	for _, tc := range []struct {
		name      string
		size      int64
		wantBytes int64 // tmpfs rounds up to whole pages
	}{
		{"default", 0, 64 << 20},
		{"unaligned", 1<<20 + 1, 1<<20 + int64(os.Getpagesize())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files, err := WritePodFiles(dir, PodFilesOptions{
				Hostname: "web-0", ShmSize: tc.size, HostResolvConf: hostResolv, HostHosts: hostHosts,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = RemovePodFiles(dir) })
			if files.Shm != filepath.Join(dir, "shm") {
				t.Fatalf("Shm = %q", files.Shm)
			}
			var st unix.Statfs_t
			if err := unix.Statfs(files.Shm, &st); err != nil {
				t.Fatal(err)
			}
			if st.Type != unix.TMPFS_MAGIC {
				t.Fatalf("%s is not a tmpfs (type %#x)", files.Shm, st.Type)
			}
			if got := int64(st.Blocks) * st.Bsize; got != tc.wantBytes {
				t.Errorf("shm size %d, want %d", got, tc.wantBytes)
			}
			if want := int64(unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC); st.Flags&want != want {
				t.Errorf("shm mount flags %#x lack nosuid, nodev or noexec", st.Flags)
			}
			if fi, err := os.Stat(files.Shm); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
				t.Errorf("shm mode %v, %v; want drwxrwxrwt", fi.Mode(), err)
			}

			// A second call must not stack a tmpfs over the one in use.
			if _, err := WritePodFiles(dir, PodFilesOptions{Hostname: "web-0", HostResolvConf: hostResolv, HostHosts: hostHosts}); !errdefs.IsAlreadyExists(err) {
				t.Fatalf("second WritePodFiles: %v, want AlreadyExists", err)
			}
			if m, err := mountinfo.Mounted(files.Shm); err != nil || !m {
				t.Fatalf("the failed second call unmounted the pod's shm: %v %v", m, err)
			}

			// A crash mid-write leaves atomicfile's temporary files.
			if err := os.WriteFile(filepath.Join(dir, ".hosts.tmp-123"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := RemovePodFiles(dir); err != nil {
				t.Fatal(err)
			}
			assertNothingIn(t, dir)
			if err := RemovePodFiles(dir); err != nil {
				t.Fatalf("second remove: %v", err)
			}
		})
	}
	if err := RemovePodFiles(filepath.Join(t.TempDir(), "never-created")); err != nil {
		t.Fatalf("remove in a missing dir: %v", err)
	}
}

func TestWritePodFilesHostIPCHasNoShm(t *testing.T) {
	hostResolv, hostHosts := hostFiles(t)
	dir := t.TempDir()
	files, err := WritePodFiles(dir, PodFilesOptions{Hostname: "web-0", HostIPC: true, HostResolvConf: hostResolv, HostHosts: hostHosts})
	if err != nil {
		t.Fatal(err)
	}
	if files.Shm != "" {
		t.Fatalf("Shm = %q for a host-IPC pod", files.Shm)
	}
	if _, err := os.Stat(filepath.Join(dir, "shm")); !os.IsNotExist(err) {
		t.Fatalf("shm made for a host-IPC pod: %v", err)
	}
}
