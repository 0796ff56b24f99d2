package conformance

import (
	"context"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsHostID is where the tests map a pod's IDs: kubelet hands out
// multiples of 65536 above the node's own users.
const usernsHostID = 1 << 20

func usernsOptions() *runtimeapi.UserNamespace {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: 65536}}
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
}

// usernsPod runs a pod in a user namespace (hostUsers: false).
func (e *ctrEnv) usernsPod(t *testing.T, name string, pid runtimeapi.NamespaceMode) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	return e.pod(t, name, func(c *runtimeapi.PodSandboxConfig) {
		c.Hostname = name
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			Pid: pid, UsernsOptions: usernsOptions(),
		}}
	})
}

// usernsCtr is a container of a user-namespaced pod, as kubelet makes it.
func (e *ctrEnv) usernsCtr(name string, pid runtimeapi.NamespaceMode, cmd ...string) *runtimeapi.ContainerConfig {
	cfg := e.ctrConfig(name, cmd...)
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: pid, UsernsOptions: usernsOptions()},
		Capabilities:     &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}},
	}
	return cfg
}

// A pod in a user namespace: its root is an unprivileged host user, its
// rootfs looks as the image made it (ID-mapped layers) and is writable,
// and its network, UTS and PID namespaces are its own to administer.
func TestUserNamespacePod(t *testing.T) {
	e := newCtrEnv(t)
	if !userNamespacesAdvertised(t, e) {
		t.Skip("the runtime does not advertise user namespaces")
	}
	for _, pid := range []runtimeapi.NamespaceMode{runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD} {
		t.Run(pid.String(), func(t *testing.T) {
			name := "userns-" + strings.ToLower(pid.String())
			podID, podCfg := e.usernsPod(t, name, pid)
			script := `cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u:%g /bin/busybox;
				echo hi > /created && stat -c %u:%g /created; hostname;
				ip link set lo down && ip link set lo up && echo net-admin-ok; grep -c . /proc/1/status >/dev/null && echo proc-ok`
			st, lines := e.runToExit(t, podID, podCfg, e.usernsCtr(name, pid, "sh", "-c", script))
			out := strings.Fields(output(lines))
			want := []string{"0", itoa(usernsHostID), "65536", "0", itoa(usernsHostID), "65536", "0", "0:0", "0:0", name, "net-admin-ok", "proc-ok"}
			if st.ExitCode != 0 || strings.Join(out, " ") != strings.Join(want, " ") {
				t.Fatalf("exit %d, output %q\nwant %q", st.ExitCode, out, want)
			}
			ps := podStatus(t, e.tg, podID)
			u := ps.GetLinux().GetNamespaces().GetOptions().GetUsernsOptions()
			if u.GetMode() != runtimeapi.NamespaceMode_POD || len(u.GetUids()) != 1 || u.GetUids()[0].HostId != usernsHostID {
				t.Fatalf("PodSandboxStatus userns options %v", u)
			}
			// An exec joins the pod's user namespace too.
			id := e.run(t, podID, podCfg, e.usernsCtr(name+"-sleeper", pid, "sleep", "3600"))
			if got := strings.Fields(e.mustExecSync(t, id, "cat", "/proc/self/uid_map")); len(got) != 3 || got[1] != itoa(usernsHostID) {
				t.Fatalf("exec's uid_map %q", got)
			}
			// On the host the container's root is the mapped user.
			if e.tg.Daemon != nil {
				if uid := hostUIDOf(t, "sleep\x003600\x00"); uid != itoa(usernsHostID) {
					t.Fatalf("the container's sleep runs as host uid %q, want %d", uid, usernsHostID)
				}
			}
		})
	}
}

// The pod's namespaces and pins go with the pod.
func TestUserNamespacePodRemoval(t *testing.T) {
	e := newCtrEnv(t)
	if !userNamespacesAdvertised(t, e) {
		t.Skip("the runtime does not advertise user namespaces")
	}
	podID, podCfg := e.usernsPod(t, "userns-removal", runtimeapi.NamespaceMode_POD)
	id := e.run(t, podID, podCfg, e.usernsCtr("sleeper", runtimeapi.NamespaceMode_POD, "sleep", "3600"))
	e.stop(t, id)
	ctx := context.Background()
	if _, err := e.tg.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tg.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), podID) {
		t.Fatalf("mounts of the removed pod remain:\n%s", grepLines(string(mi), podID))
	}
}

func TestUserNamespaceErrors(t *testing.T) {
	e := newCtrEnv(t)
	ctx := context.Background()
	bad := map[string]func(*runtimeapi.NamespaceOption){
		"host network": func(o *runtimeapi.NamespaceOption) { o.Network = runtimeapi.NamespaceMode_NODE },
		"host pid":     func(o *runtimeapi.NamespaceOption) { o.Pid = runtimeapi.NamespaceMode_NODE },
		"mode container": func(o *runtimeapi.NamespaceOption) {
			o.UsernsOptions.Mode = runtimeapi.NamespaceMode_CONTAINER
		},
		"no mappings":   func(o *runtimeapi.NamespaceOption) { o.UsernsOptions.Uids = nil },
		"root unmapped": func(o *runtimeapi.NamespaceOption) { o.UsernsOptions.Uids[0].ContainerId = 1 },
	}
	for name, mutate := range bad {
		t.Run(name, func(t *testing.T) {
			cfg := podConfig("userns-bad")
			opts := &runtimeapi.NamespaceOption{UsernsOptions: usernsOptions()}
			// A fresh mapping slice: the cases change it.
			opts.UsernsOptions.Uids = []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: 65536}}
			mutate(opts)
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: opts}
			_, err := e.tg.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("RunPodSandbox = %v, want InvalidArgument", err)
			}
		})
	}
	// A container cannot ask for a user namespace its pod lacks.
	podID, podCfg := e.pod(t, "userns-host-users")
	_, err := e.tryCreate(podID, podCfg, e.usernsCtr("c", runtimeapi.NamespaceMode_CONTAINER, "true"))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateContainer with a user namespace in a pod without = %v, want InvalidArgument", err)
	}
}

func userNamespacesAdvertised(t *testing.T, e *ctrEnv) bool {
	t.Helper()
	resp, err := e.tg.Runtime.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range resp.RuntimeHandlers {
		if h.Name == "" {
			return h.GetFeatures().GetUserNamespaces()
		}
	}
	return false
}

func grepLines(text, substr string) string {
	var out []string
	for l := range strings.Lines(text) {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// hostUIDOf is the real UID on the host of the process whose command line
// is cmdline (NUL-separated), "" if there is none.
func hostUIDOf(t *testing.T, cmdline string) string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || string(b) != cmdline {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		if f := strings.Fields(statusField(string(st), "Uid")); len(f) > 0 {
			return f[0]
		}
	}
	return ""
}
