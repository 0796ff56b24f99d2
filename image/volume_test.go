package image_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
)

// A container's image volumes are read-only views of the image that
// outlive the removal of the image, and go with RemoveImageVolumes. Both
// shapes of view are covered: one layer (a read-only bind of the layer) and
// several (a read-only overlay).
func TestImageVolumeSurvivesImageRemoval(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ctx := ctxT(t)
	files := []framework.File{{Path: "data/hello", Content: []byte("hello from the volume\n")}}
	var ids []string
	for _, layers := range []int{1, 3} {
		ref, _ := reg.Push(t, "test/volume:"+strconv.Itoa(layers), framework.MustBuildImage(t, framework.ImageSpec{Layers: layers, Files: files}))
		img, err := s.Pull(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, img.ID)
	}
	if _, err := s.PrepareImageVolume(ctx, "c1", 0, "sha256:"+zeros); !errdefs.IsNotFound(err) {
		t.Fatalf("PrepareImageVolume of a missing image = %v, want NotFound", err)
	}
	var targets []string
	for n, id := range ids {
		mounts, err := s.PrepareImageVolume(ctx, "c1", n, id)
		if err != nil {
			t.Fatal(err)
		}
		target := t.TempDir()
		if err := mount.All(mounts, target); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mount.UnmountAll(target, unix.MNT_DETACH) })
		targets = append(targets, target)
	}
	if _, err := s.PrepareImageVolume(ctx, "c1", 0, ids[0]); err == nil {
		t.Fatal("a second view under the same key was created")
	}
	for _, id := range ids {
		if err := s.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range targets {
		b, err := os.ReadFile(filepath.Join(target, "data/hello"))
		if err != nil || string(b) != "hello from the volume\n" {
			t.Fatalf("image volume after the image's removal: %q, %v", b, err)
		}
		if err := os.WriteFile(filepath.Join(target, "data/new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Fatalf("writing into an image volume: %v, want EROFS", err)
		}
		if err := mount.UnmountAll(target, 0); err != nil {
			t.Fatal(err)
		}
	}
	if images, _, err := s.FsInfo(ctx); err != nil || images.UsedBytes == 0 {
		t.Fatalf("FsInfo with image volumes: %+v, %v (their layers must stay)", images, err)
	}
	if err := s.RemoveImageVolumes(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveImageVolumes(ctx, "c1"); err != nil {
		t.Fatalf("second RemoveImageVolumes: %v", err)
	}
	if err := s.RemoveImageVolumes(ctx, "never-had-any"); err != nil {
		t.Fatalf("RemoveImageVolumes of a container without image volumes: %v", err)
	}
	images, containers, err := s.FsInfo(ctx)
	if err != nil || images.UsedBytes != 0 || containers.UsedBytes != 0 {
		t.Fatalf("FsInfo after the image volumes went: images %+v containers %+v %v", images, containers, err)
	}
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"
