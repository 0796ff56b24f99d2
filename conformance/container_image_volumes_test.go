package conformance

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// dataImage is the image the image-volume tests mount: busybox plus known
// files at its root and in a sub directory.
var dataImage = framework.ImageSpec{Layers: 2, Files: []framework.File{
	{Path: "hello.txt", Content: []byte("hello from the data image\n")},
	{Path: "dir/inner.txt", Content: []byte("inner\n")},
}}

// imageMount is an image volume as kubelet sends it (read-only).
func imageMount(path, image, subPath string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: path, Image: &runtimeapi.ImageSpec{Image: image}, ImageSubPath: subPath, Readonly: true}
}

// Image volumes (kubelet's ImageVolume): an image mounted read-only at a
// path, or one of its directories (image_sub_path); executables in it run
// (no noexec); ContainerStatus reports the image; a missing image, sub
// path or a sub path out of the image is refused.
func TestContainerImageVolumes(t *testing.T) {
	e := newCtrEnv(t)
	data := e.pushAndPull(t, "conformance/data:volume", dataImage)
	podID, podCfg := e.pod(t, "imagevol")
	script := `cat /data/hello.txt; cat /sub/inner.txt; ls /sub;
for d in /data /sub; do if touch $d/x 2>/dev/null; then echo $d=rw; else echo $d=ro; fi; done;
/data/bin/busybox true && echo exec-ok`
	cfg := e.ctrConfig("reader", "sh", "-c", script)
	cfg.Mounts = []*runtimeapi.Mount{imageMount("/data", data, ""), imageMount("/sub", data, "dir")}
	st, lines := e.runToExit(t, podID, podCfg, cfg)
	want := "hello from the data image\ninner\ninner.txt\n/data=ro\n/sub=ro\nexec-ok"
	if got := strings.TrimSpace(output(lines)); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	if len(st.Mounts) != 2 {
		t.Fatalf("status mounts %+v, want the two image volumes", st.Mounts)
	}
	for i, sub := range []string{"", "dir"} {
		m := st.Mounts[i]
		if m.GetImage().GetImage() != data || m.ImageSubPath != sub || !m.Readonly {
			t.Errorf("status mount %d = %+v, want image %s, sub path %q, read-only", i, m, data, sub)
		}
	}

	refused := func(t *testing.T, m *runtimeapi.Mount, codesOK []codes.Code, words ...string) {
		t.Helper()
		cfg := e.ctrConfig("refused", "true")
		cfg.Mounts = []*runtimeapi.Mount{m}
		id, err := e.tryCreate(podID, podCfg, cfg)
		if err == nil {
			_, _ = e.tg.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id})
			t.Fatal("CreateContainer succeeded")
		}
		if !slices.Contains(codesOK, status.Code(err)) {
			t.Fatalf("CreateContainer = %v, want one of %v", err, codesOK)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	}
	t.Run("missing-image", func(t *testing.T) {
		refused(t, imageMount("/data", e.reg.Ref("conformance/never-pushed:1"), ""), []codes.Code{codes.NotFound}, "never-pushed", "pull")
	})
	t.Run("missing-sub-path", func(t *testing.T) {
		refused(t, imageMount("/data", data, "no/such/dir"), []codes.Code{codes.NotFound, codes.InvalidArgument}, "no/such/dir")
	})
	t.Run("sub-path-is-a-file", func(t *testing.T) {
		refused(t, imageMount("/data", data, "hello.txt"), []codes.Code{codes.InvalidArgument, codes.FailedPrecondition}, "hello.txt")
	})
	t.Run("sub-path-escapes", func(t *testing.T) {
		refused(t, imageMount("/data", data, "../../etc"), []codes.Code{codes.InvalidArgument}, "../../etc")
	})

	// As a container's own image, an image volume's image may be removed
	// while the container exists: what it mounts stays.
	t.Run("image-removed", func(t *testing.T) {
		cfg := e.ctrConfig("after-rmi", "cat", "/data/dir/inner.txt")
		cfg.Mounts = []*runtimeapi.Mount{imageMount("/data", data, "")}
		id := e.create(t, podID, podCfg, cfg)
		if _, err := e.tg.Images.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: data}}); err != nil {
			t.Fatalf("RemoveImage: %v", err)
		}
		e.start(t, id)
		st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		if got := output(readLog(t, st.LogPath)); st.ExitCode != 0 || got != "inner\n" {
			t.Fatalf("after RemoveImage: exit %d, output %q", st.ExitCode, got)
		}
	})
}

// withVolumes adds VOLUMEs (Dockerfile VOLUME) to an image's config.
func withVolumes(t testing.TB, img v1.Image, paths ...string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Volumes = map[string]struct{}{}
	for _, p := range paths {
		cfg.Volumes[p] = struct{}{}
	}
	out, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// volumeImage has VOLUME /vol, seeded with a file owned by 1234:5678, and
// VOLUME /empty, which the image does not have.
func volumeImage(t testing.TB) v1.Image {
	return withVolumes(t, framework.MustBuildImage(t, framework.ImageSpec{Files: []framework.File{
		{Path: "vol", Dir: true, Mode: 0o750, UID: 1234, GID: 5678},
		{Path: "vol/seed", Content: []byte("seeded\n"), Mode: 0o640, UID: 1234, GID: 5678},
	}}), "/vol", "/empty")
}

// The image's VOLUMEs get a directory of their own, seeded with the
// image's content there (owner and mode kept), writable even with a
// read-only rootfs; a CRI mount at a VOLUME's path replaces it. With berth
// the directories are <root>/volumes/<id>/<n> and go with the container.
func TestContainerImageDefinedVolumes(t *testing.T) {
	e := newCtrEnv(t)
	img := e.pushImageAndPull(t, "conformance/volume:1", volumeImage(t))
	podID, podCfg := e.pod(t, "volumes")
	cfg := e.ctrConfig("vol", "sh", "-c",
		`cat /vol/seed; stat -c '%u:%g %a' /vol /vol/seed; echo new > /vol/new && cat /vol/new; touch /empty/x && echo empty-ok; if touch /rootfs-file 2>/dev/null; then echo rootfs-rw; else echo rootfs-ro; fi`)
	cfg.Image = &runtimeapi.ImageSpec{Image: img}
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{ReadonlyRootfs: true}
	id := e.run(t, podID, podCfg, cfg)
	st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	want := "seeded\n1234:5678 750\n1234:5678 640\nnew\nempty-ok\nrootfs-ro"
	if got := strings.TrimSpace(output(readLog(t, st.LogPath))); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	if len(st.Mounts) != 0 {
		t.Errorf("status mounts %+v: the image's VOLUMEs are not CRI mounts", st.Mounts)
	}
	if d := e.tg.Daemon; d != nil {
		dir := filepath.Join(d.Root, "volumes", id)
		// In path order: /empty is 0, /vol is 1.
		if b, err := os.ReadFile(filepath.Join(dir, "1", "new")); err != nil || string(b) != "new\n" {
			t.Fatalf("the container's write in /vol on the host: %q, %v", b, err)
		}
		if _, err := e.tg.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the volumes of a removed container are still there: %v", err)
		}
	}

	t.Run("cri-mount-replaces-volume", func(t *testing.T) {
		host := t.TempDir()
		if err := os.WriteFile(filepath.Join(host, "from-host"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := e.ctrConfig("covered", "ls", "/vol")
		cfg.Image = &runtimeapi.ImageSpec{Image: img}
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol/", HostPath: host}}
		_, lines := e.runToExit(t, podID, podCfg, cfg)
		if got := strings.TrimSpace(output(lines)); got != "from-host" {
			t.Fatalf("ls /vol = %q, want only the CRI mount's content", got)
		}
	})
}

// Nothing of a container's image volumes or VOLUMEs outlives it: no mount,
// no snapshot, no lease, no directory — after RemoveContainer, after a
// CreateContainer that failed half-way, and after a daemon restart in
// between.
func TestContainerImageVolumeCleanup(t *testing.T) {
	d := ownPodDaemon(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}, reg: reg, logs: t.TempDir()}
	e.image = e.pushImageAndPull(t, "conformance/volume:cleanup", volumeImage(t))
	data := e.pushAndPull(t, "conformance/data:cleanup", dataImage)
	podID, podCfg := e.pod(t, "ivcleanup")
	before := snapshotDirs(t, d.Root)
	config := func(name, subPath string) *runtimeapi.ContainerConfig {
		cfg := e.ctrConfig(name, "sleep", "1000")
		cfg.Mounts = []*runtimeapi.Mount{imageMount("/data", data, subPath)}
		return cfg
	}
	// gone checks that no container is left on disk (there is none).
	gone := func(t *testing.T) {
		t.Helper()
		if mounts, _ := framework.MountsUnder(filepath.Join(d.State, "containers")); len(mounts) != 0 {
			t.Errorf("mounts left: %v", mounts)
		}
		for _, dir := range []string{filepath.Join(d.State, "containers"), filepath.Join(d.Root, "volumes")} {
			entries, err := os.ReadDir(dir)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("%s is left", filepath.Join(dir, e.Name()))
			}
		}
		if after := snapshotDirs(t, d.Root); !slices.Equal(after, before) {
			t.Errorf("snapshots %v, want those of the images only: %v", after, before)
		}
	}

	id := e.run(t, podID, podCfg, config("live", "dir"))
	view := filepath.Join(d.State, "containers", id, "image-volumes", "0")
	if mounts, _ := framework.MountsUnder(view); len(mounts) != 1 {
		t.Fatalf("image volume mounts %v, want the view at %s", mounts, view)
	}
	if n := len(snapshotDirs(t, d.Root)); n != len(before)+2 {
		t.Fatalf("%d snapshots with the container, want %d (the images', its rootfs, its view)", n, len(before)+2)
	}
	if _, err := d.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	gone(t)

	t.Run("failed-create", func(t *testing.T) {
		id, err := e.tryCreate(podID, podCfg, config("failed", "no/such/dir"))
		if err == nil {
			t.Fatalf("CreateContainer with a missing sub path made %s", id)
		}
		gone(t)
	})

	id = e.create(t, podID, podCfg, config("restart", ""))
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.Wait(30 * time.Second)
	restarted := framework.StartDaemon(t, framework.DaemonOptions{Socket: d.Socket, Root: d.Root, State: d.State, CNIBinDir: d.CNIBinDir})
	if _, err := restarted.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer after a restart: %v", err)
	}
	gone(t)
	if _, err := restarted.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	// The image metadata can only be read once the daemon let go of it.
	if err := restarted.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	leases, snapshots := imageMetadata(t, d.Root)
	if len(leases) != 0 {
		t.Errorf("leases left: %v", leases)
	}
	for _, key := range snapshots {
		if strings.HasPrefix(key, "image-volume/") || strings.HasPrefix(key, "container/") {
			t.Errorf("snapshot %q left", key)
		}
	}
}

// snapshotDirs lists the overlay snapshotter's snapshot directories.
func snapshotDirs(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "image", "snapshots", "overlayfs", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// imageMetadata reads the leases and the snapshot keys of berth's image
// metadata (containerd's bbolt layout: v1/<namespace>/leases and
// v1/<namespace>/snapshots/<snapshotter>); the daemon must be stopped.
func imageMetadata(t testing.TB, root string) (leases, snapshots []string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(root, "image", "meta.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		ns := tx.Bucket([]byte("v1")).Bucket([]byte("berth"))
		if ns == nil {
			return nil
		}
		if b := ns.Bucket([]byte("leases")); b != nil {
			_ = b.ForEach(func(k, _ []byte) error { leases = append(leases, string(k)); return nil })
		}
		if b := ns.Bucket([]byte("snapshots")); b != nil {
			if o := b.Bucket([]byte("overlayfs")); o != nil {
				_ = o.ForEach(func(k, _ []byte) error { snapshots = append(snapshots, string(k)); return nil })
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return leases, snapshots
}
