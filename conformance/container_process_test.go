package conformance

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// Command and args combine with the image's entrypoint and cmd as kubelet
// and Docker define it; env merges image and container values; the
// working directory comes from the container, else the image.
func TestContainerCommandEnvWorkdir(t *testing.T) {
	e := newCtrEnv(t)
	img := e.pushAndPull(t, "conformance/busybox:ep", framework.ImageSpec{
		Entrypoint: []string{"echo", "ep"},
		Cmd:        []string{"cmd"},
		Env:        []string{framework.DefaultPath, "FROM_IMAGE=image", "OVERRIDE=image"},
		WorkingDir: "/tmp",
	})
	podID, podCfg := e.pod(t, "process")
	for _, tc := range []struct {
		name          string
		command, args []string
		want          string
	}{
		{"image-defaults", nil, nil, "ep cmd"},
		{"args-replace-cmd", nil, []string{"a1", "a2"}, "ep a1 a2"},
		{"command-replaces-both", []string{"echo", "c"}, nil, "c"},
		{"command-and-args", []string{"echo", "c"}, []string{"a"}, "c a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.ctrConfig(tc.name)
			cfg.Image.Image, cfg.Command, cfg.Args = img, tc.command, tc.args
			_, lines := e.runToExit(t, podID, podCfg, cfg)
			if got := strings.TrimSpace(output(lines)); got != tc.want {
				t.Fatalf("output %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("env-and-workdir", func(t *testing.T) {
		cfg := e.ctrConfig("env", "sh", "-c", `echo "$FROM_IMAGE $OVERRIDE $FROM_CTR $HOSTNAME"; pwd; echo "$PATH"`)
		cfg.Image.Image = img
		cfg.Envs = []*runtimeapi.KeyValue{{Key: "OVERRIDE", Value: []byte("ctr")}, {Key: "FROM_CTR", Value: []byte("yes")}}
		_, lines := e.runToExit(t, podID, podCfg, cfg)
		got := strings.Split(strings.TrimSpace(output(lines)), "\n")
		want := []string{"image ctr yes " + podCfg.Hostname, "/tmp", strings.TrimPrefix(framework.DefaultPath, "PATH=")}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q, want %q", got, want)
		}
		cfg = e.ctrConfig("workdir", "pwd")
		cfg.Image.Image, cfg.WorkingDir = img, "/etc"
		if _, lines := e.runToExit(t, podID, podCfg, cfg); strings.TrimSpace(output(lines)) != "/etc" {
			t.Fatalf("working dir %q, want /etc", output(lines))
		}
	})
}

// The process user: runAsUser / runAsGroup / runAsUsername, else the
// image's User, resolved in the image's /etc/passwd and /etc/group, with
// the user's groups from the image (Merge) plus SupplementalGroups.
func TestContainerUser(t *testing.T) {
	e := newCtrEnv(t)
	named := e.pushAndPull(t, "conformance/busybox:user", framework.ImageSpec{User: framework.TestUser})
	podID, podCfg := e.pod(t, "user")
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		name  string
		image string
		sc    *runtimeapi.LinuxContainerSecurityContext
		want  string
	}{
		{"root-by-default", "", nil, "uid=0(root) gid=0(root) groups=0(root)"},
		{"image-user", named, nil, "uid=1000(berthuser) gid=1000(berthuser) groups=1000(berthuser),2000(extra)"},
		{"run-as-user", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000)},
			"uid=1000(berthuser) gid=1000(berthuser) groups=1000(berthuser),2000(extra)"},
		{"run-as-group", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(2000)},
			"uid=1000(berthuser) gid=2000(extra) groups=2000(extra)"},
		{"run-as-username", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: framework.TestUser},
			"uid=1000(berthuser) gid=1000(berthuser) groups=1000(berthuser),2000(extra)"},
		{"supplemental-merge", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{3000}},
			"uid=1000(berthuser) gid=1000(berthuser) groups=1000(berthuser),2000(extra),3000"},
		{"supplemental-strict", "", &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: i64(1000), SupplementalGroups: []int64{3000},
			SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
		}, "uid=1000(berthuser) gid=1000(berthuser) groups=1000(berthuser),3000"},
		{"unknown-uid", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(4242)}, "uid=4242 gid=0(root) groups=0(root)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.ctrConfig(tc.name, "id")
			if tc.image != "" {
				cfg.Image.Image = tc.image
			}
			cfg.Linux.SecurityContext = tc.sc
			st, lines := e.runToExit(t, podID, podCfg, cfg)
			if got := strings.TrimSpace(output(lines)); got != tc.want {
				t.Fatalf("id: %q, want %q", got, tc.want)
			}
			if tc.sc != nil && tc.sc.RunAsUser != nil && st.GetUser().GetLinux().GetUid() != tc.sc.RunAsUser.Value {
				t.Fatalf("status user %+v", st.GetUser())
			}
		})
	}
	t.Run("unknown-name-is-refused", func(t *testing.T) {
		cfg := e.ctrConfig("nobody-here", "id")
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "ghost"}
		_, err := e.tryCreate(podID, podCfg, cfg)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ghost") {
			t.Fatalf("CreateContainer as an unknown user = %v, want InvalidArgument naming it", err)
		}
	})
}

// The pod's hostname, resolv.conf, hosts and /dev/shm are the container's;
// its namespaces are the pod's.
func TestContainerSeesPodFiles(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "podfiles", func(c *runtimeapi.PodSandboxConfig) {
		c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"conformance.svc.cluster.local"}}
	})
	script := `hostname; cat /etc/hostname; grep nameserver /etc/resolv.conf; grep -c "$(hostname)" /etc/hosts; ` +
		`grep ' /dev/shm ' /proc/mounts | cut -d' ' -f3; ip -o addr show eth0 | grep -c 'inet '`
	_, lines := e.runToExit(t, podID, podCfg, e.ctrConfig("files", "sh", "-c", script))
	got := strings.Split(strings.TrimSpace(output(lines)), "\n")
	want := []string{"podfiles", "podfiles", "nameserver 10.0.0.10", "1", "tmpfs", "1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// pid: POD shares one PID namespace among the pod's containers; the
// default (CONTAINER) gives each its own with itself as PID 1.
func TestContainerPIDNamespaces(t *testing.T) {
	e := newCtrEnv(t)
	t.Run("container", func(t *testing.T) {
		// kubelet's default; the CRI's zero value (POD) is the other case.
		ns := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
		podID, podCfg := e.pod(t, "pidctr", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}
		})
		cfg := e.ctrConfig("self", "sh", "-c", "echo $$")
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}
		_, lines := e.runToExit(t, podID, podCfg, cfg)
		if got := strings.TrimSpace(output(lines)); got != "1" {
			t.Fatalf("PID in its own namespace %q, want 1", got)
		}
	})
	t.Run("pod", func(t *testing.T) {
		podID, podCfg := e.pod(t, "pidpod", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
			}
		})
		sleeper := e.ctrConfig("sleeper", "sleep", "1000")
		sleeper.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
		}
		e.run(t, podID, podCfg, sleeper)
		looker := e.ctrConfig("looker", "ps", "-o", "args")
		looker.Linux.SecurityContext = sleeper.Linux.SecurityContext
		_, lines := e.runToExit(t, podID, podCfg, looker)
		if out := output(lines); !strings.Contains(out, "sleep 1000") {
			t.Fatalf("a container of a pid: POD pod does not see its sibling:\n%s", out)
		}
	})
}
