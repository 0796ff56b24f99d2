package conformance

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

func pull(t testing.TB, tg *framework.Target, ref string, auth *runtimeapi.AuthConfig) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := tg.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
	return resp.GetImageRef(), err
}

func imageStatus(t *testing.T, tg *framework.Target, ref string, verbose bool) *runtimeapi.ImageStatusResponse {
	t.Helper()
	resp, err := tg.Images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: verbose})
	if err != nil {
		t.Fatalf("ImageStatus(%s): %v", ref, err)
	}
	return resp
}

func listImages(t *testing.T, tg *framework.Target, filter string) []*runtimeapi.Image {
	t.Helper()
	req := &runtimeapi.ListImagesRequest{}
	if filter != "" {
		req.Filter = &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: filter}}
	}
	resp, err := tg.Images.ListImages(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Images
}

func removeImage(t *testing.T, tg *framework.Target, ref string) {
	t.Helper()
	if _, err := tg.Images.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("RemoveImage(%s): %v", ref, err)
	}
}

func TestPullImageAndImageStatus(t *testing.T) {
	tg := framework.NewTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := framework.MustBuildImage(t, framework.ImageSpec{User: "1000", Layers: 2})
	ref, dgst := reg.Push(t, "conformance/status:1", img)
	cfg, _ := img.ConfigName()
	id, err := pull(t, tg, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImage(t, tg, id) })
	if id != cfg.String() {
		t.Fatalf("ImageRef %s, want the image ID %s", id, cfg)
	}
	repoDigest := reg.Host + "/conformance/status@" + dgst
	for _, q := range []string{ref, id, repoDigest} {
		got := imageStatus(t, tg, q, false).GetImage()
		if got.GetId() != id || !slices.Contains(got.RepoTags, ref) || !slices.Contains(got.RepoDigests, repoDigest) {
			t.Errorf("ImageStatus(%s) = %v", q, got)
		}
		if got.GetUid().GetValue() != 1000 || got.Size == 0 {
			t.Errorf("ImageStatus(%s): uid %v size %d", q, got.GetUid(), got.Size)
		}
	}
	if found := listImages(t, tg, ref); len(found) != 1 || found[0].Id != id {
		t.Errorf("ListImages filtered by %s = %v", ref, found)
	}
	if !slices.ContainsFunc(listImages(t, tg, ""), func(i *runtimeapi.Image) bool { return i.Id == id }) {
		t.Error("ListImages does not contain the pulled image")
	}
	if found := listImages(t, tg, reg.Ref("conformance/absent:1")); len(found) != 0 {
		t.Errorf("ListImages filtered by an absent image = %v", found)
	}
}

func TestImageStatusVerbose(t *testing.T) {
	tg := framework.NewTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, _ := reg.Push(t, "conformance/verbose:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	id, err := pull(t, tg, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImage(t, tg, id) })
	resp := imageStatus(t, tg, ref, true)
	if len(resp.Info) == 0 {
		t.Fatal("verbose ImageStatus has no info")
	}
	if tg.Daemon != nil && !strings.Contains(resp.Info["info"], `"chainID":"sha256:`) {
		t.Fatalf("berth's verbose info lacks the chain ID: %v", resp.Info)
	}
}

func TestImageStatusOfMissingImageIsEmpty(t *testing.T) {
	tg := framework.NewTarget(t)
	resp := imageStatus(t, tg, "registry.invalid/nothing/here:1", false)
	if resp.Image != nil {
		t.Fatalf("status of a missing image: %v", resp.Image)
	}
}

func TestStreamImages(t *testing.T) {
	tg := framework.NewTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, _ := reg.Push(t, "conformance/stream:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	id, err := pull(t, tg, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImage(t, tg, id) })
	stream, err := tg.Images.StreamImages(context.Background(), &runtimeapi.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for {
		msg, err := stream.Recv()
		if err != nil {
			break
		}
		seen = seen || slices.ContainsFunc(msg.Images, func(i *runtimeapi.Image) bool { return i.Id == id })
	}
	if !seen {
		t.Fatal("StreamImages did not send the pulled image")
	}
}

func TestRemoveImageRemovesEveryTag(t *testing.T) {
	tg := framework.NewTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := framework.MustBuildImage(t, framework.ImageSpec{})
	refA, _ := reg.Push(t, "conformance/remove:a", img)
	refB, _ := reg.Push(t, "conformance/remove:b", img)
	idA, errA := pull(t, tg, refA, nil)
	idB, errB := pull(t, tg, refB, nil)
	if errA != nil || errB != nil || idA != idB {
		t.Fatalf("pulls: %v %v %v %v", idA, errA, idB, errB)
	}
	if tags := imageStatus(t, tg, idA, false).GetImage().GetRepoTags(); len(tags) != 2 {
		t.Fatalf("one image under two tags has tags %v", tags)
	}
	removeImage(t, tg, refA)
	for _, q := range []string{refA, refB, idA} {
		if got := imageStatus(t, tg, q, false).GetImage(); got != nil {
			t.Errorf("after removal, %s still names %v", q, got)
		}
	}
	removeImage(t, tg, refA) // removing what is gone succeeds
}

func TestImageFsInfoFollowsPullAndRemove(t *testing.T) {
	tg := framework.NewTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	ref, _ := reg.Push(t, "conformance/fsinfo:1", framework.MustBuildImage(t, framework.ImageSpec{
		Files: []framework.File{{Path: "big", Content: data}}, Layers: 2}))
	used := func() uint64 {
		resp, err := tg.Images.ImageFsInfo(context.Background(), &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.ImageFilesystems) == 0 || resp.ImageFilesystems[0].GetFsId().GetMountpoint() == "" {
			t.Fatalf("ImageFsInfo without an image filesystem: %v", resp)
		}
		if resp.ImageFilesystems[0].GetInodesUsed() == nil {
			t.Fatalf("ImageFsInfo without inodes: %v", resp)
		}
		return resp.ImageFilesystems[0].GetUsedBytes().GetValue()
	}
	before := used()
	id, err := pull(t, tg, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	afterPull := used()
	if afterPull < before+3<<20 {
		t.Fatalf("image fs grew from %d to %d bytes for a >3 MiB image", before, afterPull)
	}
	removeImage(t, tg, id)
	if afterRemove := used(); afterRemove >= afterPull {
		t.Fatalf("image fs did not shrink after removal: %d -> %d", afterPull, afterRemove)
	}
}

func TestImageRequestErrors(t *testing.T) {
	tg := framework.NewTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	cases := []struct {
		ref  string
		want codes.Code
	}{
		{"", codes.InvalidArgument},
		{"a b c", codes.InvalidArgument},
		{reg.Ref("conformance/absent:1"), codes.NotFound},
	}
	for _, tc := range cases {
		if _, err := pull(t, tg, tc.ref, nil); status.Code(err) != tc.want {
			t.Errorf("PullImage(%q) = %v, want %v", tc.ref, err, tc.want)
		}
	}
	if _, err := tg.Images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ImageStatus without an image: %v", err)
	}
	if _, err := tg.Images.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("RemoveImage without an image: %v", err)
	}
}

func TestPullImageWithCredentials(t *testing.T) {
	tg := framework.NewTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{Username: "puller", Password: "pa55"})
	ref, _ := reg.Push(t, "conformance/private:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	if _, err := pull(t, tg, ref, nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("anonymous pull of a private image: %v, want Unauthenticated", err)
	}
	if _, err := pull(t, tg, ref, &runtimeapi.AuthConfig{Username: "puller", Password: "wrong"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("pull with a wrong password: %v, want Unauthenticated", err)
	}
	id, err := pull(t, tg, ref, &runtimeapi.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("puller:pa55"))})
	if err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	removeImage(t, tg, id)
	if tg.Daemon != nil && strings.Contains(tg.Daemon.Logs(), "pa55") {
		t.Fatal("the daemon log contains the registry password")
	}
}

// A daemon killed mid-pull lists nothing afterwards, and the partial
// download is collected at the next start.
func TestDaemonKilledMidPullLeavesNothing(t *testing.T) {
	tg := framework.NewTarget(t)
	d := tg.RequireOwnBerth(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{BytesPerSecond: 256 << 10})
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i ^ i>>8 ^ i>>16)
	}
	img := framework.MustBuildImage(t, framework.ImageSpec{Files: []framework.File{{Path: "big", Content: data}}, Layers: 2})
	ref, _ := reg.Push(t, "conformance/interrupted:1", img)
	layers, _ := img.Layers()
	big, _ := layers[len(layers)-1].Digest()

	go func() { _, _ = pull(t, tg, ref, nil) }() // ends with the daemon
	waitFor(t, func() bool { return reg.BlobFetches(big.String()) > 0 })
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.Wait(30 * time.Second)

	restarted := framework.StartDaemon(t, framework.DaemonOptions{Socket: d.Socket, Root: d.Root, State: d.State})
	tg2 := &framework.Target{Conn: restarted.Conn, Runtime: restarted.Runtime, Images: restarted.Images, Daemon: restarted}
	if imgs := listImages(t, tg2, ""); len(imgs) != 0 {
		t.Fatalf("images listed after an interrupted pull: %v", imgs)
	}
	blobs := filepath.Join(d.Root, "image", "content", "blobs", "sha256")
	if _, err := os.Stat(filepath.Join(blobs, big.Hex)); err == nil {
		t.Fatal("the interrupted layer's blob was kept")
	}
	ingests, _ := os.ReadDir(filepath.Join(d.Root, "image", "content", "ingest"))
	if len(ingests) != 0 {
		t.Fatalf("partial downloads left in the ingest dir: %v", ingests)
	}
	// And the same pull now completes.
	if _, err := pull(t, tg2, ref, nil); err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
}

// waitFor polls cond until it holds (or fails the test after a minute).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(delay)
	}
}
