package cri

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-runtime/berth/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const fuzzPodUID = "0b1f5c7e-3f1a-4c55-9a57-2f1c2ad1c0de"

// kubeletPodConfig is a PodSandboxConfig as kubelet sends it for an
// ordinary pod with a host port.
func kubeletPodConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web-7c5ddbdf54-x2x9k", Namespace: "default", Uid: fuzzPodUID},
		Hostname:     "web-7c5ddbdf54-x2x9k",
		LogDirectory: "/var/log/pods/default_web-7c5ddbdf54-x2x9k_" + fuzzPodUID,
		DnsConfig: &runtimeapi.DNSConfig{
			Servers:  []string{"10.96.0.10"},
			Searches: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options:  []string{"ndots:5"},
		},
		PortMappings: []*runtimeapi.PortMapping{
			{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "0.0.0.0"},
			{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53},
		},
		Labels: map[string]string{
			"app": "web", "io.kubernetes.pod.name": "web-7c5ddbdf54-x2x9k",
			"io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": fuzzPodUID,
		},
		Annotations: map[string]string{"kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "2025-01-01T00:00:00Z"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "kubepods-burstable-pod0b1f5c7e_3f1a_4c55_9a57_2f1c2ad1c0de.slice",
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
				Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			},
			Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"},
			Resources: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 256 << 20,
			},
			Overhead: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20},
		},
	}
}

func runPodSandboxSeeds() []*runtimeapi.PodSandboxConfig {
	hostNet := kubeletPodConfig()
	hostNet.Metadata.Name, hostNet.Hostname, hostNet.PortMappings = "kube-proxy-abcde", "", nil
	hostNet.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE,
	}
	hostNet.Linux.SecurityContext.Privileged = true
	hostNet.Linux.Sysctls = nil

	userNS := kubeletPodConfig()
	userNS.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
		Pid: runtimeapi.NamespaceMode_POD,
		UsernsOptions: &runtimeapi.UserNamespace{
			Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{HostId: 65536 * 3, ContainerId: 0, Length: 65536}},
			Gids: []*runtimeapi.IDMapping{{HostId: 65536 * 3, ContainerId: 0, Length: 65536}},
		},
	}

	systemd := kubeletPodConfig()
	systemd.Linux.CgroupParent = "kubepods.slice"
	systemd.Linux.Resources.Unified = map[string]string{"memory.oom.group": "1"}
	systemd.Linux.Resources.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}

	cgroupfs := kubeletPodConfig()
	cgroupfs.Linux.CgroupParent = "/kubepods/burstable/pod" + fuzzPodUID

	crictl := &runtimeapi.PodSandboxConfig{ // crictl runp with a minimal pod.json
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "nginx-sandbox", Namespace: "default", Uid: "hdishd83djaidwnduwk28bcsb", Attempt: 1},
		LogDirectory: "/tmp", Linux: &runtimeapi.LinuxPodSandboxConfig{},
	}

	traversal := kubeletPodConfig()
	traversal.LogDirectory = "/var/log/pods/../../../etc"
	traversal.Linux.CgroupParent = "/kubepods/../../sys/fs/cgroup"
	traversal.Linux.Sysctls = map[string]string{"net/../../../../etc/passwd": "x", "kernel.hostname": "evil"}

	relative := kubeletPodConfig()
	relative.LogDirectory = "var/log/pods/x"
	relative.Hostname = "-bad-.host_name"

	nul := kubeletPodConfig()
	nul.LogDirectory = "/var/log/pods/a\x00b"
	nul.Hostname = "a\x00b"
	nul.Metadata.Name = "a\x00b"
	nul.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1\x00"}

	long := kubeletPodConfig()
	long.Hostname = strings.Repeat("a", 300)
	long.LogDirectory = "/" + strings.Repeat("d/", 3000)
	long.DnsConfig.Searches = slices.Repeat([]string{strings.Repeat("s", 63)}, 40)

	unicode := kubeletPodConfig()
	unicode.Metadata = &runtimeapi.PodSandboxMetadata{Name: "ポッド", Namespace: "名前空間", Uid: "ü"}
	unicode.Hostname = "ホスト"
	unicode.LogDirectory = "/var/log/pods/ポッド"

	ports := kubeletPodConfig()
	ports.PortMappings = []*runtimeapi.PortMapping{
		{HostPort: 70000, ContainerPort: 80}, {HostPort: 80, ContainerPort: 0},
		{HostPort: 81, ContainerPort: 81, Protocol: runtimeapi.Protocol(42)},
		{HostPort: 82, ContainerPort: 82, HostIp: "not-an-ip"},
	}

	protocol := kubeletPodConfig()
	protocol.PortMappings = []*runtimeapi.PortMapping{{HostPort: 81, ContainerPort: 81, Protocol: runtimeapi.Protocol(42)}}
	hostIP := kubeletPodConfig()
	hostIP.PortMappings = []*runtimeapi.PortMapping{{HostPort: 82, ContainerPort: 82, HostIp: "not-an-ip"}}

	cniArgs := kubeletPodConfig()
	cniArgs.Metadata.Name = "web;K8S_POD_NAMESPACE=kube-system"

	badUserNS := kubeletPodConfig()
	badUserNS.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_NODE,
		UsernsOptions: &runtimeapi.UserNamespace{
			Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{HostId: 0, ContainerId: 0, Length: 4294967295}},
		},
	}

	return []*runtimeapi.PodSandboxConfig{
		kubeletPodConfig(), hostNet, userNS, systemd, cgroupfs, crictl, traversal, relative, nul, long, unicode, ports, protocol, hostIP, cniArgs, badUserNS,
		{}, {Metadata: &runtimeapi.PodSandboxMetadata{}},
	}
}

// FuzzRunPodSandboxConfig feeds RunPodSandbox's translation (and, for what
// it refuses, the RPC itself) any PodSandboxConfig: fuzzed protobuf bytes,
// with the string fields the fuzzer most needs to reach given directly.
//
// RunPodSandbox runs on a sandbox manager that cannot record anything
// (see fuzzManager), so every config goes through the whole validation of
// the RPC and nothing is ever made.
//
// Properties: nothing panics; a refused config is InvalidArgument and
// leaves nothing behind; a config the translation accepts is translated
// faithfully (metadata, names, paths, labels, sysctls, namespaces) and holds
// only valid port mappings and user namespace mappings; a config the whole
// validation accepts has a log directory and a cgroup parent that are
// absolute and free of "..", a valid hostname, metadata, sysctls and
// runtime handler.
func FuzzRunPodSandboxConfig(f *testing.F) {
	for _, c := range runPodSandboxSeeds() {
		f.Add(mustMarshal(f, c), "", "", "", "")
	}
	base := mustMarshal(f, kubeletPodConfig())
	for _, s := range []struct{ handler, logDir, hostname, cgroupParent string }{
		{"runc", "", "", ""},
		{"kata", "../../etc", "", ""},
		{"", "/var/log/pods/x/../../../../root", "", "/"},
		{"", "/var/log/pods/./x//", "localhost", "/kubepods/../.."},
		{"", "/", "a.b.c", "kubepods.slice"},
		{"", "\x00", "\x00", "\x00"},
		{"", "/var/log/pods/\u202e", "xn--bcher-kva", "/kubepods/\u00e9"},
	} {
		f.Add(base, s.handler, s.logDir, s.hostname, s.cgroupParent)
	}
	f.Add([]byte{}, "", "", "", "")
	f.Add([]byte("\x0a\x00"), "", "", "", "")

	fm := newFuzzManager(f)
	s := &Server{sandboxes: fm.Manager, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, data []byte, handler, logDir, hostname, cgroupParent string) {
		c := &runtimeapi.PodSandboxConfig{}
		if err := proto.Unmarshal(data, c); err != nil {
			return // not a message: gRPC refuses it before berth sees it
		}
		if logDir != "" {
			c.LogDirectory = logDir
		}
		if hostname != "" {
			c.Hostname = hostname
		}
		if cgroupParent != "" {
			if c.Linux == nil {
				c.Linux = &runtimeapi.LinuxPodSandboxConfig{}
			}
			c.Linux.CgroupParent = cgroupParent
		}
		orig := proto.Clone(c)
		cfg, err := toSandboxConfig(c, handler)
		if !proto.Equal(orig, c) {
			t.Fatal("toSandboxConfig changed the request")
		}
		if err != nil {
			requireCode(t, "toSandboxConfig", err, codes.InvalidArgument)
		} else {
			checkSandboxTranslation(t, c, handler, cfg)
		}
		_, rerr := s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: c, RuntimeHandler: handler})
		switch {
		case rerr == nil:
			t.Fatal("RunPodSandbox succeeded on a manager that cannot record anything")
		case errors.Is(rerr, syscall.ENOTDIR): // validated, then failed to record
			if err != nil {
				t.Fatalf("RunPodSandbox got past validation of a config its translation refused (%v)", err)
			}
			checkSandboxValidated(t, cfg)
		default:
			requireCode(t, "RunPodSandbox", rerr, codes.InvalidArgument)
		}
		fm.requireUntouched(t)
	})
}

// checkSandboxValidated checks what the sandbox manager's validation must
// guarantee of a config it lets through: paths that stay where they
// belong, and names the kernel and the files can hold.
func checkSandboxValidated(t *testing.T, cfg sandbox.Config) {
	t.Helper()
	if d := cfg.LogDirectory; d != "" && (!filepath.IsAbs(d) || hasDotDot(d) || strings.ContainsRune(d, 0)) {
		t.Fatalf("accepted log directory %s", short(d))
	}
	// The manager uses the systemd driver: a parent is a slice name.
	if p := cfg.CgroupParent; p != "" && (!strings.HasSuffix(p, ".slice") || strings.ContainsAny(p, "/\x00") || p == "-.slice") {
		t.Fatalf("accepted systemd cgroup parent %s", short(p))
	}
	if h := cfg.Hostname; len(h) > 64 || strings.ContainsFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.')
	}) {
		t.Fatalf("accepted hostname %s", short(h))
	}
	md := cfg.Metadata
	if md.Name == "" || md.Namespace == "" || md.UID == "" || strings.ContainsAny(md.Name+md.Namespace+md.UID, ";=\x00") {
		t.Fatalf("accepted metadata %s %s %s", short(md.Name), short(md.Namespace), short(md.UID))
	}
	if _, _, err := sandbox.SplitSysctls(cfg.Sysctls, cfg.HostNetwork, cfg.HostIPC); err != nil {
		t.Fatalf("accepted sysctls: %v", err)
	}
	if h := cfg.RuntimeHandler; h != "" && h != "runc" {
		t.Fatalf("accepted unknown runtime handler %s", short(h))
	}
}

// checkSandboxTranslation checks an accepted config against its request.
func checkSandboxTranslation(t *testing.T, c *runtimeapi.PodSandboxConfig, handler string, cfg sandbox.Config) {
	t.Helper()
	md := c.GetMetadata()
	if md == nil {
		t.Fatal("accepted a config without metadata")
	}
	if cfg.Metadata != (sandbox.Metadata{Name: md.Name, Namespace: md.Namespace, UID: md.Uid, Attempt: md.Attempt}) {
		t.Fatalf("metadata %+v translated to %+v", md, cfg.Metadata)
	}
	if cfg.Hostname != c.Hostname || cfg.LogDirectory != c.LogDirectory || cfg.RuntimeHandler != handler ||
		cfg.CgroupParent != c.GetLinux().GetCgroupParent() {
		t.Fatalf("hostname/log directory/handler/cgroup parent changed: %+v", cfg)
	}
	if !maps.Equal(cfg.Labels, c.Labels) || !maps.Equal(cfg.Annotations, c.Annotations) || !maps.Equal(cfg.Sysctls, c.GetLinux().GetSysctls()) {
		t.Fatal("labels, annotations or sysctls changed")
	}
	ns := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if cfg.HostNetwork != (ns.GetNetwork() == runtimeapi.NamespaceMode_NODE) ||
		cfg.HostPID != (ns.GetPid() == runtimeapi.NamespaceMode_NODE) ||
		cfg.HostIPC != (ns.GetIpc() == runtimeapi.NamespaceMode_NODE) ||
		cfg.SharedPID != (ns.GetPid() == runtimeapi.NamespaceMode_POD) {
		t.Fatalf("namespace options %v translated to network %v pid %v/%v ipc %v", ns, cfg.HostNetwork, cfg.HostPID, cfg.SharedPID, cfg.HostIPC)
	}
	if d := c.DnsConfig; (d == nil) != (cfg.DNS == nil) ||
		(d != nil && (!slices.Equal(d.Servers, cfg.DNS.Servers) || !slices.Equal(d.Searches, cfg.DNS.Searches) || !slices.Equal(d.Options, cfg.DNS.Options))) {
		t.Fatal("DNS config changed")
	}
	if u := cfg.UserNS; u != nil {
		if ns.GetUsernsOptions().GetMode() != runtimeapi.NamespaceMode_POD {
			t.Fatalf("user namespace from mode %v", ns.GetUsernsOptions().GetMode())
		}
		if err := sandbox.ValidateUserNamespace(u); err != nil {
			t.Fatalf("accepted invalid user namespace mappings: %v", err)
		}
		if cfg.HostNetwork || cfg.HostPID || cfg.HostIPC {
			t.Fatal("accepted a pod in a user namespace with host namespaces")
		}
	} else if m := ns.GetUsernsOptions().GetMode(); ns.GetUsernsOptions() != nil && m != runtimeapi.NamespaceMode_NODE {
		t.Fatalf("userns mode %v accepted without a user namespace", m)
	}
	want := 0
	for _, pm := range c.PortMappings {
		if pm.HostPort > 0 {
			want++
		}
	}
	if len(cfg.PortMappings) != want {
		t.Fatalf("%d port mappings with a host port became %d", want, len(cfg.PortMappings))
	}
	for _, pm := range cfg.PortMappings {
		if pm.HostPort < 1 || pm.HostPort > 65535 || pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			t.Fatalf("accepted port mapping %+v", pm)
		}
		if !slices.Contains([]string{"tcp", "udp", "sctp"}, pm.Protocol) {
			t.Fatalf("accepted port mapping protocol %s", short(pm.Protocol))
		}
		if pm.HostIP != "" {
			if _, err := netip.ParseAddr(pm.HostIP); err != nil {
				t.Fatalf("accepted port mapping host IP %s", short(pm.HostIP))
			}
		}
	}
}

// The kubelet seed gets through the whole validation, so that the fuzzer
// starts from the accepting paths.
func TestRunPodSandboxFuzzSeedValid(t *testing.T) {
	fm := newFuzzManager(t)
	s := &Server{sandboxes: fm.Manager, log: slog.New(slog.DiscardHandler)}
	_, err := s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: kubeletPodConfig()})
	if !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("RunPodSandbox(kubelet seed) = %v, want the failure to record it", err)
	}
}
