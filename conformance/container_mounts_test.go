package conformance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Bind mounts: read-write and read-only, symlinked host paths, a missing
// host path refused, and rslave propagation of a mount the host makes
// after the container started.
func TestContainerMounts(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "mounts")
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "hello"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(host, link); err != nil {
		t.Fatal(err)
	}
	cfg := e.ctrConfig("binds", "sh", "-c",
		`cat /rw/hello; echo written > /rw/new; if touch /ro/x 2>/dev/null; then echo ro-writable; else echo ro-refused; fi; cat /via-link/hello`)
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/rw", HostPath: host},
		{ContainerPath: "/ro", HostPath: host, Readonly: true},
		{ContainerPath: "/via-link", HostPath: link, Readonly: true},
	}
	st, lines := e.runToExit(t, podID, podCfg, cfg)
	if got := strings.TrimSpace(output(lines)); got != "from host\nro-refused\nfrom host" {
		t.Fatalf("output %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(host, "new")); err != nil || string(b) != "written\n" {
		t.Fatalf("write through the bind mount: %q, %v", b, err)
	}
	if len(st.Mounts) != 3 || st.Mounts[1].ContainerPath != "/ro" || !st.Mounts[1].Readonly {
		t.Errorf("status mounts %+v", st.Mounts)
	}

	t.Run("missing-host-path", func(t *testing.T) {
		cfg := e.ctrConfig("missing", "true")
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: filepath.Join(host, "absent")}}
		_, err := e.tryCreate(podID, podCfg, cfg)
		if code := status.Code(err); (code != codes.NotFound && code != codes.InvalidArgument) || !strings.Contains(err.Error(), "absent") {
			t.Fatalf("CreateContainer with a missing host path = %v", err)
		}
	})

	t.Run("rslave-propagation", func(t *testing.T) {
		// The host side must be a shared mount for propagation to reach
		// the container: a tmpfs made shared for the test.
		src := t.TempDir()
		mountTmpfs(t, src, unix.MS_SHARED)
		cfg := e.ctrConfig("rslave", "sh", "-c", `echo ready; while [ ! -e /prop/sub/marker ]; do sleep 0.02; done; echo seen`)
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/prop", HostPath: src, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
		id := e.run(t, podID, podCfg, cfg)
		waitLog(t, e.status(t, id).LogPath, "ready")
		sub := filepath.Join(src, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		mountTmpfs(t, sub, 0)
		if err := os.WriteFile(filepath.Join(sub, "marker"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		if out := output(readLog(t, st.LogPath)); !strings.Contains(out, "seen") {
			t.Fatalf("the host's new mount did not propagate: %q", out)
		}
	})
}

// rshared (Bidirectional) propagation: a mount a privileged container makes
// below the mount point appears on the host.
func TestContainerBidirectionalPropagation(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "rshared")
	src := t.TempDir()
	mountTmpfs(t, src, unix.MS_SHARED)
	inner := filepath.Join(src, "inner")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(inner, unix.MNT_DETACH) })
	cfg := e.ctrConfig("rshared", "sh", "-c", `mount -t tmpfs inner /prop/inner && echo made > /prop/inner/marker`)
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/prop", HostPath: src, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
	st, lines := e.runToExit(t, podID, podCfg, cfg)
	if st.ExitCode != 0 {
		t.Fatalf("exit %d: %s", st.ExitCode, output(lines))
	}
	if b, err := os.ReadFile(filepath.Join(inner, "marker")); err != nil || string(b) != "made\n" {
		t.Fatalf("the container's mount did not reach the host: %q, %v", b, err)
	}

	t.Run("private-host-mount-is-refused", func(t *testing.T) {
		private := t.TempDir()
		mountTmpfs(t, private, unix.MS_PRIVATE)
		cfg := e.ctrConfig("rshared-private", "true")
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/p", HostPath: private, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
		if _, err := e.tryCreate(podID, podCfg, cfg); err == nil || !strings.Contains(err.Error(), "shared") {
			t.Fatalf("rshared of a host path on a private mount: %v, want an error saying it must be shared", err)
		}
	})
}

// A recursive read-only mount makes submounts read-only too, and the
// runtime advertises the feature.
func TestContainerRecursiveReadonlyMount(t *testing.T) {
	e := newCtrEnv(t)
	resp, err := e.tg.Runtime.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range resp.RuntimeHandlers {
		if !h.GetFeatures().GetRecursiveReadOnlyMounts() {
			t.Fatalf("handler %q does not advertise recursive read-only mounts", h.Name)
		}
	}
	podID, podCfg := e.pod(t, "rro")
	src := t.TempDir()
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, sub, 0)
	script := `for d in /ro/sub /rro/sub; do if touch $d/x 2>/dev/null; then echo $d=rw; else echo $d=ro; fi; done`
	cfg := e.ctrConfig("rro", "sh", "-c", script)
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/ro", HostPath: src, Readonly: true},
		{ContainerPath: "/rro", HostPath: src, Readonly: true, RecursiveReadOnly: true},
	}
	_, lines := e.runToExit(t, podID, podCfg, cfg)
	// A plain read-only bind leaves the submount writable (as with runc and
	// containerd); the recursive one does not.
	if got := strings.ReplaceAll(strings.TrimSpace(output(lines)), "\n", "|"); got != "/ro/sub=rw|/rro/sub=ro" {
		t.Fatalf("got %q", got)
	}
}

// Host devices are made available with their permissions.
func TestContainerDevices(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "devices")
	cfg := e.ctrConfig("dev", "sh", "-c", `ls -l /dev/mynull | cut -c1; echo hi > /dev/mynull && echo wrote; head -c 4 /dev/myzero | wc -c`)
	cfg.Devices = []*runtimeapi.Device{
		{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rwm"},
		{HostPath: "/dev/zero", ContainerPath: "/dev/myzero", Permissions: "r"},
	}
	_, lines := e.runToExit(t, podID, podCfg, cfg)
	if got := strings.ReplaceAll(strings.TrimSpace(output(lines)), "\n", "|"); got != "c|wrote|4" {
		t.Fatalf("got %q", got)
	}
}

// mountTmpfs mounts a small tmpfs at dir until the test ends, with the
// given propagation (unix.MS_SHARED, unix.MS_PRIVATE; 0 leaves the default).
func mountTmpfs(t *testing.T, dir string, propagation uintptr) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if propagation != 0 {
		if err := unix.Mount("", dir, "", propagation, ""); err != nil {
			t.Fatal(err)
		}
	}
}
