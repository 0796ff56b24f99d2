package conformance

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// A disk that fills up during a pull or a create gives ResourceExhausted,
// and the same request succeeds once there is space again.
func TestDiskFullGivesResourceExhausted(t *testing.T) {
	framework.SkipIfExternal(t)
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o711); err != nil {
		t.Fatal(err)
	}
	// berth's root on a small tmpfs, removed after the daemon is gone
	// (cleanups run last-registered first).
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=12m,mode=0711"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	resize := func(size string) {
		t.Helper()
		if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_REMOUNT, "size="+size+",mode=0711"); err != nil {
			t.Fatalf("resize the tmpfs to %s: %v", size, err)
		}
	}

	d := framework.StartDaemon(t, framework.DaemonOptions{Network: true, Root: root})
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}

	// 16 MiB that do not compress: more than the disk holds.
	big := make([]byte, 16<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	ref, _ := reg.Push(t, "conformance/big:1", framework.MustBuildImage(t, framework.ImageSpec{
		Layers: 2, Files: []framework.File{{Path: "/big", Content: big}},
	}))
	if _, err := pull(t, tg, ref, nil); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("pull onto a full disk = %v, want ResourceExhausted", err)
	}
	resize("96m")
	if _, err := pull(t, tg, ref, nil); err != nil {
		t.Fatalf("pull once there is space: %v", err)
	}
	e.image = ref

	podID, podCfg := e.pod(t, "disk-full")
	// Fill what is left, then create.
	filler := filepath.Join(root, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize); err != nil {
		t.Fatalf("fill the disk: %v", err)
	}
	f.Close()
	cfg := e.ctrConfig("full", "sh", "-c", "echo hello > /written && cat /written")
	if _, err := e.tryCreate(podID, podCfg, cfg); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("CreateContainer on a full disk = %v, want ResourceExhausted", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	st2, lines := e.runToExit(t, podID, podCfg, cfg)
	if st2.ExitCode != 0 || output(lines) != "hello\n" {
		t.Fatalf("the container created once there is space: exit %d, output %q", st2.ExitCode, output(lines))
	}
	ctx := context.Background()
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
}
