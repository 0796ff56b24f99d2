package image_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
	"github.com/containerd/containerd/v2/core/mount"
)

// A container's rootfs outlives the removal of its image, and goes with
// RemoveRootfs.
func TestRootfsSurvivesImageRemoval(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, _ := reg.Push(t, "test/rootfs:1", framework.MustBuildImage(t, framework.ImageSpec{Layers: 3,
		Files: []framework.File{{Path: "etc/motd", Content: []byte("hello from the image\n")}}}))
	ctx := ctxT(t)
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareRootfs(ctx, "c1", ref, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareRootfs(ctx, "c1", ref, "", ""); err == nil {
		t.Fatal("a second rootfs for the same container was created")
	}
	if err := s.Remove(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	mounts, err := s.RootfsMounts(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := mount.All(mounts, target); err != nil {
		t.Fatal(err)
	}
	motd, readErr := os.ReadFile(filepath.Join(target, "etc/motd"))
	writeErr := os.WriteFile(filepath.Join(target, "written-by-container"), make([]byte, 1<<20), 0o644)
	if err := mount.UnmountAll(target, 0); err != nil {
		t.Fatal(err)
	}
	if readErr != nil || string(motd) != "hello from the image\n" || writeErr != nil {
		t.Fatalf("rootfs after image removal: %q %v %v", motd, readErr, writeErr)
	}
	images, containers, err := s.FsInfo(ctx)
	if err != nil || containers.UsedBytes < 1<<20 || images.UsedBytes == 0 {
		t.Fatalf("FsInfo with a container: images %+v containers %+v %v", images, containers, err)
	}
	if err := s.RemoveRootfs(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveRootfs(ctx, "c1"); err != nil {
		t.Fatalf("second RemoveRootfs: %v", err)
	}
	images, containers, err = s.FsInfo(ctx)
	if err != nil || images.UsedBytes != 0 || containers.UsedBytes != 0 {
		t.Fatalf("FsInfo after the container went: images %+v containers %+v %v", images, containers, err)
	}
}
