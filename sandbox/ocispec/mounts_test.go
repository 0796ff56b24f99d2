package ocispec

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var defaultDestinations = []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}

// podFiles gives the pod its files in a temporary directory.
func podFiles(t *testing.T, in *Input) {
	t.Helper()
	dir := t.TempDir()
	in.Pod.HostnameFile = filepath.Join(dir, "hostname")
	in.Pod.Hosts = filepath.Join(dir, "hosts")
	in.Pod.ResolvConf = filepath.Join(dir, "resolv.conf")
	in.Pod.Shm = filepath.Join(dir, "shm")
	for _, f := range []string{in.Pod.HostnameFile, in.Pod.Hosts, in.Pod.ResolvConf} {
		writeFile(t, f, "x\n")
	}
	if err := os.Mkdir(in.Pod.Shm, 0o755); err != nil {
		t.Fatal(err)
	}
}

func hostDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDefaultMounts(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	s := mustGenerate(t, g, baseInput(t)).Spec
	if got := destinations(s); !slices.Equal(got, defaultDestinations) {
		t.Fatalf("mounts = %v, want %v", got, defaultDestinations)
	}
	for dst, want := range map[string]specs.Mount{
		"/proc":          {Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		"/dev/shm":       {Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		"/sys":           {Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		"/sys/fs/cgroup": {Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	} {
		m, _ := findMount(s, dst)
		if m.Type != want.Type || m.Source != want.Source || !slices.Equal(m.Options, want.Options) {
			t.Errorf("%s = %+v, want %+v", dst, m, want)
		}
	}
	if s.Linux.RootfsPropagation != "" {
		t.Errorf("rootfs propagation = %q, want runc's default", s.Linux.RootfsPropagation)
	}
}

func TestPrivilegedMountsWritable(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Security.Privileged = true
	s := mustGenerate(t, g, in).Spec
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		m, _ := findMount(s, dst)
		if slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rw") {
			t.Errorf("%s options %v, want rw for a privileged container", dst, m.Options)
		}
	}
	// The template is not changed for the next container.
	s = mustGenerate(t, g, baseInput(t)).Spec
	if m, _ := findMount(s, "/sys"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys of a plain container after a privileged one: %v", m.Options)
	}
}

func TestCgroupMountKeepsHostOptions(t *testing.T) {
	g, f := newTestGenerator(t, Defaults{})
	f.cgroupfsOptions = "rw,nsdelegate,memory_recursiveprot"
	m, _ := findMount(mustGenerate(t, g, baseInput(t)).Spec, "/sys/fs/cgroup")
	if !slices.Contains(m.Options, "nsdelegate") || !slices.Contains(m.Options, "memory_recursiveprot") {
		t.Errorf("without a cgroup namespace the host's options are kept: %v", m.Options)
	}
	f.v2 = true
	m, _ = findMount(mustGenerate(t, g, baseInput(t)).Spec, "/sys/fs/cgroup")
	if slices.Contains(m.Options, "nsdelegate") {
		t.Errorf("with a cgroup namespace the host's options are not copied: %v", m.Options)
	}
}

func TestPodFileMounts(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	podFiles(t, &in)
	s := mustGenerate(t, g, in).Spec
	want := []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"}
	if got := destinations(s); !slices.Equal(got, want) {
		t.Fatalf("mounts = %v\nwant     %v", got, want)
	}
	shm, _ := findMount(s, "/dev/shm")
	if shm.Type != "bind" || shm.Source != in.Pod.Shm || !slices.Equal(shm.Options, []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}) {
		t.Errorf("/dev/shm = %+v, want a bind of the pod's", shm)
	}

	in.Container.Security.ReadonlyRootfs = true
	s = mustGenerate(t, g, in).Spec
	if !s.Root.Readonly {
		t.Error("root is not read-only")
	}
	for _, dst := range []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"} {
		if m, _ := findMount(s, dst); !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) {
			t.Errorf("%s options %v, want read-only with a read-only rootfs", dst, m.Options)
		}
	}
	if m, _ := findMount(s, "/dev/shm"); !slices.Contains(m.Options, "rw") {
		t.Errorf("/dev/shm options %v, want rw even with a read-only rootfs", m.Options)
	}
}

func TestPodFilesMissingOrHost(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	podFiles(t, &in)
	if err := os.Remove(in.Pod.Hosts); err != nil {
		t.Fatal(err)
	}
	in.Pod.Shm = "" // no pod /dev/shm: the default tmpfs stays
	s := mustGenerate(t, g, in).Spec
	if _, ok := findMount(s, "/etc/hosts"); ok {
		t.Error("a missing pod file is mounted")
	}
	if m, _ := findMount(s, "/dev/shm"); m.Type != "tmpfs" {
		t.Errorf("/dev/shm = %+v, want the default tmpfs", m)
	}

	in.Pod.HostIPC, in.Pod.IPCNS = true, ""
	s = mustGenerate(t, g, in).Spec
	if m, _ := findMount(s, "/dev/shm"); m.Type != "bind" || m.Source != "/dev/shm" {
		t.Errorf("/dev/shm of a host-IPC pod = %+v, want the host's bound", m)
	}
}

func TestCRIMountsOrderAndReplacement(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	podFiles(t, &in)
	src := hostDir(t)
	in.Container.Mounts = []Mount{
		{ContainerPath: "/data/sub/deep", HostPath: src},
		{ContainerPath: "/data", HostPath: src},
		{ContainerPath: "/etc/hosts", HostPath: in.Pod.HostnameFile},
		{ContainerPath: "/var/log/", HostPath: src},
		{ContainerPath: "/x/../etc/config", HostPath: src},
	}
	s := mustGenerate(t, g, in).Spec
	want := []string{
		"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
		"/data", "/etc/hosts", "/var/log", "/etc/config", "/etc/hostname", "/etc/resolv.conf", "/dev/shm", "/data/sub/deep",
	}
	if got := destinations(s); !slices.Equal(got, want) {
		t.Fatalf("mounts = %v\nwant     %v", got, want)
	}
	if m, _ := findMount(s, "/etc/hosts"); m.Source != in.Pod.HostnameFile {
		t.Errorf("/etc/hosts from %q, want the CRI mount's source", m.Source)
	}

	// A CRI /dev mount hides every default mount below /dev.
	in.Container.Mounts = []Mount{{ContainerPath: "/dev", HostPath: src}}
	want = []string{"/proc", "/sys", "/sys/fs/cgroup", "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"}
	if got := destinations(mustGenerate(t, g, in).Spec); !slices.Equal(got, want) {
		t.Errorf("with a /dev mount: %v\nwant                %v", got, want)
	}
}

// An image volume is a read-only bind of the view the caller mounted;
// the image's VOLUMEs are read-write binds of the caller's directories,
// after the pod's files of their depth, also with a read-only rootfs.
func TestImageVolumeAndVolumeMounts(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	podFiles(t, &in)
	view, vol := hostDir(t), hostDir(t)
	in.Container.Security.ReadonlyRootfs = true
	in.Container.Mounts = []Mount{{ContainerPath: "/data", HostPath: view, Readonly: true, Image: "example.com/data:1", ImageID: "sha256:abc"}}
	in.Volumes = []Mount{{ContainerPath: "/vol/", HostPath: vol, SELinuxRelabel: true}}
	s := mustGenerate(t, g, in).Spec
	want := []string{
		"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
		"/data", "/vol", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm",
	}
	if got := destinations(s); !slices.Equal(got, want) {
		t.Fatalf("mounts = %v\nwant     %v", got, want)
	}
	if m, _ := findMount(s, "/data"); m.Type != "bind" || m.Source != view || !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) {
		t.Errorf("image volume = %+v, want a read-only bind of %q", m, view)
	}
	if m, _ := findMount(s, "/vol"); m.Type != "bind" || m.Source != vol || !slices.Equal(m.Options, []string{"rbind", "rprivate", "rw"}) {
		t.Errorf("image VOLUME = %+v, want a read-write bind of %q", m, vol)
	}

	in.Volumes = []Mount{{ContainerPath: "vol", HostPath: vol}}
	_, err := g.Generate(in)
	wantErr(t, err, isInvalid, `"vol"`, "absolute")
}

func TestBindMountOptions(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	src := hostDir(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		m       Mount
		wantSrc string
		opts    []string
	}{
		{name: "rw", m: Mount{ContainerPath: "/d", HostPath: src}, wantSrc: src, opts: []string{"rbind", "rprivate", "rw"}},
		{name: "ro", m: Mount{ContainerPath: "/d", HostPath: src, Readonly: true}, wantSrc: src, opts: []string{"rbind", "rprivate", "ro"}},
		{name: "recursive ro", m: Mount{ContainerPath: "/d", HostPath: src, Readonly: true, RecursiveReadonly: true}, wantSrc: src, opts: []string{"rbind", "rprivate", "rro"}},
		{name: "symlinked host path is resolved", m: Mount{ContainerPath: "/d", HostPath: link}, wantSrc: src, opts: []string{"rbind", "rprivate", "rw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Mounts = []Mount{tc.m}
			m, ok := findMount(mustGenerate(t, g, in).Spec, "/d")
			if !ok || m.Type != "bind" || m.Source != tc.wantSrc || !slices.Equal(m.Options, tc.opts) {
				t.Errorf("mount = %+v, want a bind of %q with %v", m, tc.wantSrc, tc.opts)
			}
		})
	}
}

func TestBindMountErrors(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	src := hostDir(t)
	for _, tc := range []struct {
		name  string
		m     Mount
		class func(error) bool
		words []string
	}{
		{name: "missing host path", m: Mount{ContainerPath: "/d", HostPath: "/nonexistent/berth/x"}, class: isNotFound, words: []string{`"/nonexistent/berth/x"`, `"/d"`, "does not exist"}},
		{name: "relative container path", m: Mount{ContainerPath: "d", HostPath: src}, class: isInvalid, words: []string{"container_path", `"d"`}},
		{name: "relative host path", m: Mount{ContainerPath: "/d", HostPath: "tmp"}, class: isInvalid, words: []string{"host_path"}},
		{name: "rro without ro", m: Mount{ContainerPath: "/d", HostPath: src, RecursiveReadonly: true}, class: isInvalid, words: []string{"recursive read-only"}},
		{name: "rro with rslave", m: Mount{ContainerPath: "/d", HostPath: src, Readonly: true, RecursiveReadonly: true, Propagation: PropagationHostToCtr}, class: isInvalid, words: []string{"private propagation"}},
		{name: "bad propagation", m: Mount{ContainerPath: "/d", HostPath: src, Propagation: 9}, class: isInvalid, words: []string{"propagation 9"}},
		{name: "image volume not prepared", m: Mount{ContainerPath: "/d", Image: "busybox", Readonly: true}, class: isInvalid, words: []string{"image volume", `"busybox"`, "not prepared"}},
		{name: "writable image volume", m: Mount{ContainerPath: "/d", HostPath: src, Image: "busybox"}, class: isInvalid, words: []string{"image volumes are read-only"}},
		{name: "id-mapped mount outside a user namespace", m: Mount{ContainerPath: "/d", HostPath: src, UIDMappings: []IDMapping{{0, 1000, 1}}, GIDMappings: []IDMapping{{0, 1000, 1}}}, class: isInvalid, words: []string{"user namespace", "hostUsers: false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Mounts = []Mount{tc.m}
			_, err := g.Generate(in)
			wantErr(t, err, tc.class, tc.words...)
		})
	}
}

func TestPropagation(t *testing.T) {
	g, f := newTestGenerator(t, Defaults{})
	shared, slave, private := hostDir(t), hostDir(t), hostDir(t)
	f.mounts[shared] = &mountinfo.Info{Mountpoint: shared, Optional: "shared:5"}
	f.mounts[slave] = &mountinfo.Info{Mountpoint: slave, Optional: "master:7"}
	f.mounts[private] = &mountinfo.Info{Mountpoint: private}
	for _, tc := range []struct {
		name     string
		mounts   []Mount
		opts     map[string]string // destination → propagation option
		rootfs   string
		errClass func(error) bool
	}{
		{name: "bidirectional on shared", mounts: []Mount{{ContainerPath: "/a", HostPath: shared, Propagation: PropagationBidirection}}, opts: map[string]string{"/a": "rshared"}, rootfs: "rshared"},
		{name: "host-to-container on slave", mounts: []Mount{{ContainerPath: "/a", HostPath: slave, Propagation: PropagationHostToCtr}}, opts: map[string]string{"/a": "rslave"}, rootfs: "rslave"},
		{name: "host-to-container on shared", mounts: []Mount{{ContainerPath: "/a", HostPath: shared, Propagation: PropagationHostToCtr}}, opts: map[string]string{"/a": "rslave"}, rootfs: "rslave"},
		{
			name: "rshared wins over rslave", rootfs: "rshared",
			mounts: []Mount{
				{ContainerPath: "/a", HostPath: shared, Propagation: PropagationBidirection},
				{ContainerPath: "/b", HostPath: slave, Propagation: PropagationHostToCtr},
				{ContainerPath: "/c", HostPath: private},
			},
			opts: map[string]string{"/a": "rshared", "/b": "rslave", "/c": "rprivate"},
		},
		{name: "bidirectional on slave", mounts: []Mount{{ContainerPath: "/a", HostPath: slave, Propagation: PropagationBidirection}}, errClass: isPrecondition},
		{name: "host-to-container on private", mounts: []Mount{{ContainerPath: "/a", HostPath: private, Propagation: PropagationHostToCtr}}, errClass: isPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Mounts = tc.mounts
			res, err := g.Generate(in)
			if tc.errClass != nil {
				wantErr(t, err, tc.errClass, "make it shared")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for dst, opt := range tc.opts {
				if m, _ := findMount(res.Spec, dst); !slices.Contains(m.Options, opt) {
					t.Errorf("%s options %v, want %s", dst, m.Options, opt)
				}
			}
			if got := res.Spec.Linux.RootfsPropagation; got != tc.rootfs {
				t.Errorf("rootfs propagation = %q, want %q", got, tc.rootfs)
			}
		})
	}
}
