package cri

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/image"
	"github.com/berth-runtime/berth/sandbox"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/moby/sys/signal"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fuzzImage is the pulled image the fuzzed containers are created from.
var fuzzImage = image.Image{
	ID:          "sha256:9f1c3c1d0b5e9a8f7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706",
	RepoTags:    []string{"registry.example.com/team/app:1.2"},
	RepoDigests: []string{"registry.example.com/team/app@sha256:0d5e7c8b9a1f2e3d4c5b6a79881726354f4e3d2c1b0a9f8e7d6c5b4a39281706"},
	Config: imagespec.Image{Config: imagespec.ImageConfig{
		Entrypoint: []string{"/docker-entrypoint.sh"}, Cmd: []string{"nginx", "-g", "daemon off;"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27"},
		WorkingDir: "/srv", User: "alice", StopSignal: "SIGQUIT",
	}},
}

// kubeletContainerConfig is a ContainerConfig as kubelet sends it.
func kubeletContainerConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: "web", Attempt: 1},
		Image:      &runtimeapi.ImageSpec{Image: "registry.example.com/team/app:1.2", UserSpecifiedImage: "registry.example.com/team/app:1.2"},
		Command:    []string{"/bin/sh", "-c"},
		Args:       []string{"exec nginx -g 'daemon off;'"},
		WorkingDir: "/srv/www",
		Envs: []*runtimeapi.KeyValue{
			{Key: "KUBERNETES_SERVICE_HOST", Value: []byte("10.96.0.1")}, {Key: "KUBERNETES_SERVICE_PORT", Value: []byte("443")},
			{Key: "POD_NAME", Value: []byte("web-7c5ddbdf54-x2x9k")},
		},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: "/", Readonly: true, SelinuxRelabel: true},
			{ContainerPath: "/etc/hosts", HostPath: "/etc/hosts"},
			{ContainerPath: "/dev/termination-log", HostPath: "/dev/null"},
			{ContainerPath: "/data", Image: &runtimeapi.ImageSpec{Image: "registry.example.com/data:1"}, ImageSubPath: "share"},
		},
		Devices:     []*runtimeapi.Device{{ContainerPath: "/dev/fuse-like", HostPath: "/dev/null", Permissions: "rw"}},
		Labels:      map[string]string{"io.kubernetes.container.name": "web", "io.kubernetes.pod.name": "web-7c5ddbdf54-x2x9k"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "a1b2c3d4", "io.kubernetes.container.restartCount": "1"},
		LogPath:     "web/1.log",
		Stdin:       false,
		Tty:         false,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 204, MemoryLimitInBytes: 128 << 20, OomScoreAdj: 999,
			},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities:       &runtimeapi.Capability{AddCapabilities: []string{"NET_BIND_SERVICE"}, DropCapabilities: []string{"ALL"}},
				NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
				RunAsGroup:         &runtimeapi.Int64Value{Value: 1000},
				SupplementalGroups: []int64{50},
				NoNewPrivs:         true,
				ReadonlyRootfs:     true,
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				MaskedPaths:        []string{"/proc/acpi", "/proc/kcore"},
				ReadonlyPaths:      []string{"/proc/sys"},
			},
		},
		StopSignal: runtimeapi.Signal_SIGNAL_SIGTERM,
	}
}

func createContainerSeeds() []*runtimeapi.ContainerConfig {
	var out []*runtimeapi.ContainerConfig
	add := func(change func(c *runtimeapi.ContainerConfig)) {
		c := kubeletContainerConfig()
		change(c)
		out = append(out, c)
	}
	add(func(c *runtimeapi.ContainerConfig) {})
	add(func(c *runtimeapi.ContainerConfig) { // crictl create with a minimal ctr.json
		*c = runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "busybox"},
			Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"top"}, LogPath: "busybox.0.log",
			Linux: &runtimeapi.LinuxContainerConfig{}}
	})
	add(func(c *runtimeapi.ContainerConfig) { // privileged debug container in the host's namespaces
		sc := c.Linux.SecurityContext
		sc.Privileged, sc.ReadonlyRootfs, sc.NoNewPrivs = true, false, false
		sc.NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}
		sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"CAP_NET_ADMIN"}}
		sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
		c.Mounts[0].Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
		c.Tty, c.Stdin, c.StdinOnce = true, true, true
	})
	add(func(c *runtimeapi.ContainerConfig) { // ephemeral container targeting another's PID namespace
		c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "0123abcd"}
		c.Linux.SecurityContext.RunAsUsername = "bob"
		c.Linux.SecurityContext.RunAsUser = nil
		c.Linux.SecurityContext.RunAsGroup = nil
	})
	add(func(c *runtimeapi.ContainerConfig) { // a pod in a user namespace with an ID-mapped mount
		ids := []*runtimeapi.IDMapping{{HostId: 65536 * 5, Length: 65536}}
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: ids, Gids: ids}
		c.Mounts[0].UidMappings, c.Mounts[0].GidMappings = ids, ids
	})
	add(func(c *runtimeapi.ContainerConfig) {
		c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "profiles/audit.json"}
		c.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-nginx"}
		c.Linux.Resources.Unified = map[string]string{"memory.high": "100M"}
		c.Linux.Resources.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 2 << 20}}
		c.StopSignal = runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3
	})
	// Nasty: path traversal, absolute and relative paths, NUL bytes,
	// very long strings, unicode, unknown enum values.
	add(func(c *runtimeapi.ContainerConfig) {
		c.LogPath = "../../../../etc/cron.d/evil"
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/../../../etc", HostPath: "/var/lib/kubelet/pods/../../../../etc"}}
		c.WorkingDir = "../.."
	})
	add(func(c *runtimeapi.ContainerConfig) {
		c.LogPath = "/etc/shadow"
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "relative/path", HostPath: "relative/host"}}
		c.Devices = []*runtimeapi.Device{{ContainerPath: "dev/x", HostPath: "dev/null", Permissions: "rwx"}}
	})
	add(func(c *runtimeapi.ContainerConfig) {
		c.Metadata.Name = "a\x00b"
		c.LogPath = "web/\x00.log"
		c.Command = []string{"/bin/sh\x00", "-c"}
		c.Envs = []*runtimeapi.KeyValue{{Key: "A\x00", Value: []byte("x")}, {Key: "B", Value: []byte("y\x00")}}
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data\x00", HostPath: "/tmp\x00"}}
		c.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/a\x00", HostPath: "/dev/null\x00"}}
	})
	add(func(c *runtimeapi.ContainerConfig) { c.Command = []string{"/bin/sh\x00", "-c"} })
	add(func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "/srv\x00/www" })
	add(func(c *runtimeapi.ContainerConfig) { c.Devices[0].ContainerPath = "/dev/a\x00" })
	add(func(c *runtimeapi.ContainerConfig) {
		long := strings.Repeat("x", 5000)
		c.Metadata.Name = long
		c.LogPath = long + "/0.log"
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/" + long, HostPath: "/" + long}}
		c.Envs = []*runtimeapi.KeyValue{{Key: long, Value: []byte(long)}}
	})
	add(func(c *runtimeapi.ContainerConfig) {
		c.Metadata.Name = "コンテナ"
		c.LogPath = "コンテナ/0.log"
		c.WorkingDir = "/作業"
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/データ", HostPath: "/tmp"}}
		c.Envs = []*runtimeapi.KeyValue{{Key: "ÄÖÜ", Value: []byte{0xff, 0xfe}}, {Key: "A=B", Value: []byte("C")}}
	})
	add(func(c *runtimeapi.ContainerConfig) {
		c.StopSignal = runtimeapi.Signal(1000)
		c.Mounts[0].Propagation = runtimeapi.MountPropagation(7)
		c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode(9), Pid: runtimeapi.NamespaceMode(9)}
		c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_ProfileType(5)}
	})
	add(func(c *runtimeapi.ContainerConfig) {
		c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: -1}
		c.Linux.SecurityContext.SupplementalGroups = []int64{1 << 40}
		c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: -5, MemoryLimitInBytes: -7, OomScoreAdj: 5000}
		c.Linux.SecurityContext.SeccompProfilePath = "localhost/../../../../proc/kmsg"
		c.Linux.SecurityContext.Seccomp = nil
	})
	add(func(c *runtimeapi.ContainerConfig) {
		c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}}
	})
	out = append(out, &runtimeapi.ContainerConfig{}, &runtimeapi.ContainerConfig{Windows: &runtimeapi.WindowsContainerConfig{}})
	return out
}

// FuzzCreateContainerConfig feeds CreateContainer's translation and the
// OCI spec generator any ContainerConfig: fuzzed protobuf bytes, with the
// log path and working directory given directly.
//
// Properties: nothing panics; the translation refuses only with
// InvalidArgument and otherwise keeps what was asked (names, command, env,
// mounts, devices, labels, log path, a stop signal that round-trips and
// that a stop can send); the sandbox manager refuses a bad name or log
// path with InvalidArgument before it looks for the pod, and creates
// nothing; the spec generator refuses with a typed error (InvalidArgument,
// NotFound, FailedPrecondition, NotImplemented: never Unknown), and a spec
// it makes can be written as config.json, has absolute, clean mount
// destinations free of ".." (each CRI mount at its cleaned container
// path, from an absolute source), an absolute working directory, the
// container's environment as KEY=VALUE with names free of "=", and
// absolute device paths.
func FuzzCreateContainerConfig(f *testing.F) {
	for _, c := range createContainerSeeds() {
		f.Add(mustMarshal(f, c), "", "")
	}
	base := mustMarshal(f, kubeletContainerConfig())
	for _, s := range []struct{ logPath, workingDir string }{
		{"web/0.log", "/"},
		{"..", "."},
		{"web/../../0.log", "/a/../../b"},
		{"./web//0.log", "/srv/./www/"},
		{"/var/log/pods/x/web/0.log", "srv"},
		{"\x00", "\x00"},
		{"web/\u202e0.log", "/\u00e9"},
	} {
		f.Add(base, s.logPath, s.workingDir)
	}

	fm := newFuzzManager(f)
	env := newSpecEnv(f)
	f.Fuzz(func(t *testing.T, data []byte, logPath, workingDir string) {
		c := &runtimeapi.ContainerConfig{}
		if err := proto.Unmarshal(data, c); err != nil {
			return
		}
		if logPath != "" {
			c.LogPath = logPath
		}
		if workingDir != "" {
			c.WorkingDir = workingDir
		}
		orig := proto.Clone(c)
		cc, err := toContainerConfig(c, fuzzImage)
		if !proto.Equal(orig, c) {
			t.Fatal("toContainerConfig changed the request")
		}
		if err != nil {
			requireCode(t, "toContainerConfig", err, codes.InvalidArgument)
			return
		}
		checkContainerTranslation(t, c, cc)

		// The manager checks the name and the log path before it looks for
		// the pod (there is none).
		_, err = fm.CreateContainer(context.Background(), "0000000000000000000000000000000000000000000000000000000000000000", cc)
		requireCode(t, "sandbox CreateContainer", err, codes.InvalidArgument, codes.NotFound)
		if grpcCode(err) == codes.NotFound {
			if cc.Metadata.Name == "" {
				t.Fatal("accepted a container without a name")
			}
			if p := cc.LogPath; p != "" && (!filepath.IsLocal(p) || strings.ContainsRune(p, 0)) {
				t.Fatalf("accepted log path %s", short(p))
			}
		}
		fm.requireUntouched(t)

		env.generate(t, cc)
	})
}

// checkContainerTranslation checks an accepted config against its request.
func checkContainerTranslation(t *testing.T, c *runtimeapi.ContainerConfig, cc sandbox.ContainerConfig) {
	t.Helper()
	s := cc.Spec
	if cc.Metadata.Name != c.GetMetadata().GetName() || s.Name != cc.Metadata.Name || cc.Metadata.Attempt != c.GetMetadata().GetAttempt() {
		t.Fatalf("metadata %v translated to %+v", c.GetMetadata(), cc.Metadata)
	}
	if !slices.Equal(s.Command, c.Command) || !slices.Equal(s.Args, c.Args) || s.WorkingDir != c.WorkingDir || cc.LogPath != c.LogPath {
		t.Fatal("command, args, working dir or log path changed")
	}
	if !maps.Equal(s.Labels, c.Labels) || !maps.Equal(s.Annotations, c.Annotations) {
		t.Fatal("labels or annotations changed")
	}
	if len(s.Env) != len(c.Envs) || len(s.Mounts) != len(c.Mounts) || len(s.Devices) != len(c.Devices) {
		t.Fatal("env, mounts or devices lost or added")
	}
	for i, kv := range c.Envs {
		if s.Env[i] != (ocispec.KeyValue{Key: kv.Key, Value: string(kv.Value)}) {
			t.Fatalf("env %s changed", short(kv.Key))
		}
	}
	for i, m := range c.Mounts {
		if s.Mounts[i].ContainerPath != m.ContainerPath {
			t.Fatalf("mount %s moved to %s", short(m.ContainerPath), short(s.Mounts[i].ContainerPath))
		}
	}
	if cc.Image.Requested != c.GetImage().GetImage() || cc.Image.ID != fuzzImage.ID {
		t.Fatalf("image %+v", cc.Image)
	}
	ns := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if ns.GetPid() == runtimeapi.NamespaceMode_TARGET && (cc.TargetID == "" || cc.TargetID != ns.GetTargetId()) {
		t.Fatalf("pid TARGET %s became target %s", short(ns.GetTargetId()), short(cc.TargetID))
	}
	// The stop signal must be one a stop can send, and read back the same
	// in ContainerStatus.
	if sig := cc.StopSignalArg; sig != "" {
		if n, err := signal.ParseSignal(sig); err != nil || !signal.ValidSignalForPlatform(n) {
			t.Fatalf("stop signal %v became %s, which is not a signal", c.StopSignal, short(sig))
		}
	}
	if got := toCRISignal(cc.StopSignalArg); got != c.StopSignal {
		t.Fatalf("stop signal %v became %s, which reads back as %v", c.StopSignal, short(cc.StopSignalArg), got)
	}
}

// specEnv is what the spec generator needs: an image rootfs with a user
// database, pod files, a seccomp profile root with a profile, and a
// directory that stands for a prepared image volume.
type specEnv struct {
	gen                             *ocispec.Generator
	rootfs, profiles, volume        string
	hostname, resolv, hosts, shm    string
	userNSPin, pidPin, netNS, ipcNS string
}

func newSpecEnv(tb testing.TB) *specEnv {
	tb.Helper()
	dir := tb.TempDir()
	e := &specEnv{
		rootfs: filepath.Join(dir, "rootfs"), profiles: filepath.Join(dir, "seccomp"), volume: filepath.Join(dir, "volume"),
		hostname: filepath.Join(dir, "pod", "hostname"), resolv: filepath.Join(dir, "pod", "resolv.conf"),
		hosts: filepath.Join(dir, "pod", "hosts"), shm: filepath.Join(dir, "pod", "shm"),
		userNSPin: "/run/berth/sandboxes/pod/user", pidPin: "/run/berth/sandboxes/pod/pid",
		netNS: "/run/berth/sandboxes/pod/netns", ipcNS: "/run/berth/sandboxes/pod/ipc",
	}
	files := map[string]string{
		filepath.Join(e.rootfs, "etc/passwd"):            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
		filepath.Join(e.rootfs, "etc/group"):             "root:x:0:\nalice:x:1000:\nbob:x:1001:alice\nstaff:x:50:alice,bob\n",
		filepath.Join(e.profiles, "profiles/audit.json"): `{"defaultAction":"SCMP_ACT_LOG"}`,
		e.hostname: "pod\n", e.resolv: "nameserver 10.96.0.10\n", e.hosts: "127.0.0.1 localhost\n",
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for _, d := range []string{e.shm, e.volume, filepath.Join(e.rootfs, "srv")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	// The real host's probes (read-only), AppArmor off so that nothing is
	// ever loaded into the kernel.
	e.gen = ocispec.NewGenerator(ocispec.Defaults{SeccompProfileRoot: e.profiles})
	return e
}

// input builds the generator's input for a translated container as the
// sandbox manager would, in a pod whose namespaces suit the container. It
// keeps the generator off the host's files: Localhost seccomp profiles are
// looked up below the temp profile root only, a device that is a directory
// (which would be walked) becomes /dev/null, and image volumes are bound
// from a temp directory, as if the image had been mounted there.
func (e *specEnv) input(cc sandbox.ContainerConfig) ocispec.Input {
	spec := cc.Spec
	sc := &spec.Security
	if !seccomp.Enabled && (sc.Seccomp == nil || sc.Seccomp.Type == ocispec.ProfileRuntimeDefault) {
		// A build without -tags seccomp has no RuntimeDefault profile.
		sc.Seccomp = &ocispec.Profile{Type: ocispec.ProfileUnconfined}
	}
	if p := sc.Seccomp; p != nil && p.Type == ocispec.ProfileLocalhost {
		if name := strings.TrimPrefix(p.LocalhostRef, "localhost/"); filepath.IsAbs(name) {
			sc.Seccomp = &ocispec.Profile{Type: p.Type, LocalhostRef: filepath.Join(e.profiles, name)}
		}
	}
	spec.Devices = slices.Clone(spec.Devices)
	for i, d := range spec.Devices {
		if st, err := os.Stat(d.HostPath); err == nil && st.IsDir() {
			spec.Devices[i].HostPath = "/dev/null"
		}
	}
	spec.Mounts = slices.Clone(spec.Mounts)
	for i, m := range spec.Mounts {
		if m.Image != "" {
			spec.Mounts[i].HostPath = e.volume
		}
	}
	pod := ocispec.Pod{
		ID: "pod", Name: "web", Namespace: "default", UID: fuzzPodUID, Hostname: "web",
		HostnameFile: e.hostname, ResolvConf: e.resolv, Hosts: e.hosts, Shm: e.shm,
		NetNS: e.netNS, IPCNS: e.ipcNS, UTSNS: "/run/berth/sandboxes/pod/uts",
		HostNetwork: sc.NetworkNS == ocispec.NamespaceNode, HostIPC: sc.IPCNS == ocispec.NamespaceNode,
		HostPID: sc.PIDNS == ocispec.NamespaceNode, SupplementalGroupsPolicy: cc.SupplementalGroupsPolicy,
	}
	if pod.HostNetwork {
		pod.NetNS, pod.UTSNS = "", ""
	}
	if pod.HostIPC {
		pod.IPCNS = ""
	}
	if sc.PIDNS == ocispec.NamespacePod {
		pod.PIDNS = e.pidPin
	}
	if sc.PIDNS == ocispec.NamespaceTarget {
		sc.TargetPIDNS = "/proc/4242/ns/pid"
	}
	if sc.UserNS != nil {
		pod.UserNS, pod.UserNSMappings = e.userNSPin, sc.UserNS
	}
	return ocispec.Input{
		ID: "ctr", Rootfs: e.rootfs, Container: spec, Image: cc.Image.Config, ImageName: cc.Image.Requested,
		Pod: pod, CgroupsPath: "/kubepods/pod/ctr",
	}
}

// generate runs the spec generator on a translated container and checks
// its answer.
func (e *specEnv) generate(t *testing.T, cc sandbox.ContainerConfig) {
	t.Helper()
	in := e.input(cc)
	res, err := e.gen.Generate(in)
	if err != nil {
		requireCode(t, "Generate", err, codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.Unimplemented)
		return
	}
	s := res.Spec
	if _, err := json.Marshal(s); err != nil {
		t.Fatalf("the spec cannot be written: %v", err)
	}
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) != m.Destination || hasDotDot(m.Destination) {
			t.Fatalf("spec mount destination %s", short(m.Destination))
		}
	}
	for _, m := range in.Container.Mounts {
		dst := filepath.Clean(m.ContainerPath)
		if hasDotDot(m.ContainerPath) || hasDotDot(m.HostPath) {
			t.Fatalf("accepted mount %s from %s, which has \"..\"", short(m.ContainerPath), short(m.HostPath))
		}
		i := slices.IndexFunc(s.Mounts, func(sm specs.Mount) bool { return sm.Destination == dst && sm.Type == "bind" })
		if i < 0 {
			t.Fatalf("mount %s is not in the spec", short(m.ContainerPath))
		}
		if src := s.Mounts[i].Source; !filepath.IsAbs(src) {
			t.Fatalf("mount %s from relative source %s", short(dst), short(src))
		}
		if m.Readonly && !slices.Contains(s.Mounts[i].Options, "ro") && !slices.Contains(s.Mounts[i].Options, "rro") {
			t.Fatalf("read-only mount %s has options %v", short(dst), s.Mounts[i].Options)
		}
	}
	// What the kernel gets as a path or an argument holds no NUL byte.
	nul := func(v string) bool { return strings.ContainsRune(v, 0) }
	if slices.ContainsFunc(s.Process.Args, nul) || nul(s.Process.Cwd) ||
		slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return nul(m.Destination) || nul(m.Source) }) ||
		slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return nul(d.Path) }) {
		t.Fatalf("a process argument, the working directory, a mount or a device path holds a NUL byte: args %q cwd %s", s.Process.Args, short(s.Process.Cwd))
	}
	if len(s.Process.Args) == 0 || !filepath.IsAbs(s.Process.Cwd) {
		t.Fatalf("process args %q, cwd %q", s.Process.Args, s.Process.Cwd)
	}
	for _, kv := range in.Container.Env {
		if strings.Contains(kv.Key, "=") {
			t.Fatalf("accepted environment variable name %s", short(kv.Key))
		}
	}
	for _, kv := range s.Process.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			t.Fatalf("spec environment entry %s", short(kv))
		}
	}
	for _, d := range s.Linux.Devices {
		if !filepath.IsAbs(d.Path) {
			t.Fatalf("device path %s", short(d.Path))
		}
	}
	if in.Container.Security.Privileged && s.Process.Capabilities == nil {
		t.Fatal("privileged container without capabilities")
	}
	if res.StopSignal == "" {
		t.Fatal("no stop signal")
	}
}

// The kubelet seed gets through translation and spec generation, so that
// the fuzzer starts from the accepting paths.
func TestCreateContainerFuzzSeedValid(t *testing.T) {
	c := kubeletContainerConfig()
	if os.Geteuid() != 0 { // berth cannot give what it does not hold
		c.Linux.SecurityContext.Capabilities.AddCapabilities = nil
	}
	cc, err := toContainerConfig(c, fuzzImage)
	if err != nil {
		t.Fatal(err)
	}
	env := newSpecEnv(t)
	if _, err := env.gen.Generate(env.input(cc)); err != nil {
		t.Fatalf("Generate(kubelet seed): %v", err)
	}
}
