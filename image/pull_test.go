package image_test

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
)

func TestPullByTagStatusListRemove(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := framework.MustBuildImage(t, framework.ImageSpec{Cmd: []string{"sh"}, User: "1000", Layers: 3,
		Labels: map[string]string{"a": "b"}})
	ref, manifestDigest := reg.Push(t, "test/busybox:1.0", img)
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)

	got, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cfgName.String() {
		t.Fatalf("ID %s, want config digest %s", got.ID, cfgName)
	}
	if !slices.Equal(got.RepoTags, []string{ref}) || !slices.Equal(got.RepoDigests, []string{reg.Host + "/test/busybox@" + manifestDigest}) {
		t.Fatalf("tags %v digests %v", got.RepoTags, got.RepoDigests)
	}
	if got.UID == nil || *got.UID != 1000 || got.Size == 0 {
		t.Fatalf("uid %v size %d", got.UID, got.Size)
	}
	for _, q := range []string{ref, got.ID, got.ID[:20], got.ID[7:19], got.RepoDigests[0]} {
		if st, err := s.Get(ctx, q); err != nil || st.ID != got.ID {
			t.Errorf("Get(%q) = %v, %v", q, st.ID, err)
		}
	}
	if l := s.List(ctx); len(l) != 1 || l[0].ID != got.ID {
		t.Fatalf("List = %v", l)
	}
	before, _, err := s.FsInfo(ctx)
	if err != nil || before.UsedBytes == 0 || before.InodesUsed == 0 {
		t.Fatalf("FsInfo after pull: %+v %v", before, err)
	}
	if err := s.Remove(ctx, got.ID[:12]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ref); err == nil {
		t.Fatal("image still present after removal")
	}
	after, _, err := s.FsInfo(ctx)
	if err != nil || after.UsedBytes != 0 {
		t.Fatalf("FsInfo after removal: %+v %v (before %+v)", after, err, before)
	}
	if err := s.Remove(ctx, ref); err != nil {
		t.Fatalf("removing a missing image: %v", err)
	}
}

func TestPullByDigestIsInstantWhenPresent(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	_, dgst := reg.Push(t, "test/app:v1", framework.MustBuildImage(t, framework.ImageSpec{}))
	ref := reg.Host + "/test/app@" + dgst
	ctx := ctxT(t)
	first, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	fetches := reg.ManifestFetches(dgst)
	again, err := s.Pull(ctx, ref, nil)
	if err != nil || again.ID != first.ID {
		t.Fatalf("second pull: %v %v", again.ID, err)
	}
	if reg.ManifestFetches(dgst) != fetches {
		t.Fatal("a present image pulled by digest went to the registry again")
	}
	if len(again.RepoTags) != 0 || len(again.RepoDigests) != 1 {
		t.Fatalf("digest pull recorded tags %v digests %v", again.RepoTags, again.RepoDigests)
	}
}

func TestPullTagAndDigestTogether(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, dgst := reg.Push(t, "test/app:v1", framework.MustBuildImage(t, framework.ImageSpec{}))
	got, err := s.Pull(ctxT(t), ref+"@"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.RepoDigests[0] != reg.Host+"/test/app@"+dgst {
		t.Fatalf("digests %v", got.RepoDigests)
	}
}

func TestPullPicksThisPlatformFromIndex(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	here := "linux/" + runtime.GOARCH
	other := "linux/s390x"
	if runtime.GOARCH == "s390x" {
		other = "linux/amd64"
	}
	mine := framework.MustBuildImage(t, framework.ImageSpec{Platform: here, Labels: map[string]string{"which": "mine"}})
	theirs := framework.MustBuildImage(t, framework.ImageSpec{Platform: other, Labels: map[string]string{"which": "theirs"}})
	idx, err := framework.BuildIndex(map[string]v1.Image{here: mine, other: theirs})
	if err != nil {
		t.Fatal(err)
	}
	ref, idxDigest := reg.PushIndex(t, "test/multi:1", idx)
	got, err := s.Pull(ctxT(t), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Config.Config.Labels["which"] != "mine" {
		t.Fatalf("pulled the %q image", got.Config.Config.Labels["which"])
	}
	if got.RepoDigests[0] != reg.Host+"/test/multi@"+idxDigest {
		t.Fatalf("repo digest should be the index digest, got %v", got.RepoDigests)
	}
	theirsCfg, _ := theirs.ConfigName()
	if reg.BlobFetches(theirsCfg.String()) != 0 {
		t.Fatal("downloaded the other platform's config")
	}
}

func TestPullShortNameAndBadReferences(t *testing.T) {
	s := testStore(t, image.Options{})
	ctx := ctxT(t)
	for _, bad := range []string{"", "a b", "registry:5000/x:tag:extra", "x@sha256:short", "-leading/dash"} {
		if _, err := s.Pull(ctx, bad, nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Pull(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	// A short name normalizes to docker.io; with docker.io pointed at an
	// unreachable mirror the error names the normalized reference.
	dir := t.TempDir()
	writeHosts(t, dir, "docker.io", `server = "http://127.0.0.1:1"`)
	s2 := testStore(t, image.Options{RegistryConfigDir: dir})
	_, err := s2.Pull(ctx, "busybox", nil)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "docker.io/library/busybox:latest") {
		t.Fatalf("want Unavailable naming docker.io/library/busybox:latest, got %v", err)
	}
}

func TestPullNotFound(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	_, err := s.Pull(ctxT(t), reg.Ref("test/absent:1"), nil)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("want NotFound, got %v", err)
	}
	if len(s.List(ctxT(t))) != 0 {
		t.Fatal("a failed pull left an image")
	}
}

func TestPullWithAuth(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{Username: "kube", Password: "s3cret"})
	ref, _ := reg.Push(t, "private/app:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	ctx := ctxT(t)
	for name, auth := range map[string]*image.Auth{
		"none":            nil,
		"wrong password":  {Username: "kube", Password: "nope"},
		"other registry":  {Username: "kube", Password: "s3cret", ServerAddress: "elsewhere.example"},
		"wrong auth blob": {Auth: base64.StdEncoding.EncodeToString([]byte("kube:nope"))},
	} {
		_, err := s.Pull(ctx, ref, auth)
		if !errdefs.IsUnauthorized(err) && !errdefs.IsPermissionDenied(err) {
			t.Errorf("%s: want Unauthenticated, got %v", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
	for name, auth := range map[string]*image.Auth{
		"user+password": {Username: "kube", Password: "s3cret", ServerAddress: reg.Host},
		"auth field":    {Auth: base64.StdEncoding.EncodeToString([]byte("kube:s3cret"))},
		"server url":    {Username: "kube", Password: "s3cret", ServerAddress: "http://" + reg.Host + "/v2/"},
	} {
		if _, err := s.Pull(ctx, ref, auth); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func writeHosts(t testing.TB, dir, host, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPullThroughMirrorRecordsRequestedName(t *testing.T) {
	dir := t.TempDir()
	s := testStore(t, image.Options{RegistryConfigDir: dir})
	mirror := framework.StartRegistry(t, framework.RegistryOptions{})
	_, dgst := mirror.Push(t, "library/app:2.0", framework.MustBuildImage(t, framework.ImageSpec{}))
	// The upstream is unreachable (an air-gapped node); the plain-HTTP
	// mirror serves the same repositories.
	writeHosts(t, dir, "registry.example.com", fmt.Sprintf(`server = "https://127.0.0.1:1"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, mirror.Host))
	got, err := s.Pull(ctxT(t), "registry.example.com/library/app:2.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RepoTags, []string{"registry.example.com/library/app:2.0"}) ||
		!slices.Equal(got.RepoDigests, []string{"registry.example.com/library/app@" + dgst}) {
		t.Fatalf("recorded as %v %v", got.RepoTags, got.RepoDigests)
	}
}

func TestConcurrentIdenticalPullsShareOneDownload(t *testing.T) {
	s := testStore(t, image.Options{})
	// Slow enough that the pulls overlap.
	reg := framework.StartRegistry(t, framework.RegistryOptions{BytesPerSecond: 2 << 20})
	img := framework.MustBuildImage(t, framework.ImageSpec{Layers: 2, Files: []framework.File{{Path: "data", Content: randomBytes(1 << 20)}}})
	ref, _ := reg.Push(t, "test/shared:1", img)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Go(func() {
			got, err := s.Pull(ctx, ref, nil)
			ids[i], errs[i] = got.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("pull %d: %v %v", i, ids[i], errs[i])
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		if n := reg.BlobFetches(d.String()); n != 1 {
			t.Errorf("layer %s downloaded %d times, want once", d, n)
		}
	}
}

func TestTagMovesToNewImage(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ctx := ctxT(t)
	ref, _ := reg.Push(t, "test/moving:latest", framework.MustBuildImage(t, framework.ImageSpec{Cmd: []string{"v1"}}))
	old, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "test/moving:latest", framework.MustBuildImage(t, framework.ImageSpec{Cmd: []string{"v2"}}))
	cur, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cur.ID == old.ID {
		t.Fatal("re-pull of a moved tag kept the old image")
	}
	oldNow, err := s.Get(ctx, old.ID)
	if err != nil {
		t.Fatalf("old image lost its ID record: %v", err)
	}
	if len(oldNow.RepoTags) != 0 {
		t.Fatalf("old image still has tags %v", oldNow.RepoTags)
	}
	if got, _ := s.Get(ctx, ref); got.ID != cur.ID {
		t.Fatalf("tag resolves to %s, want %s", got.ID, cur.ID)
	}
}

func TestRecordsSurviveReopenAndPinned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "image")
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, _ := reg.Push(t, "test/pinned:1", framework.MustBuildImage(t, framework.ImageSpec{User: "berthuser"}))
	s := testStore(t, image.Options{Dir: dir, Pinned: []string{ref}})
	pulled, err := s.Pull(ctxT(t), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !pulled.Pinned || pulled.UID != nil || pulled.Username != "berthuser" {
		t.Fatalf("pinned %v uid %v username %q", pulled.Pinned, pulled.UID, pulled.Username)
	}
	s.Close()
	reopened := testStore(t, image.Options{Dir: dir, Pinned: []string{ref}})
	got, err := reopened.Get(ctxT(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != pulled.ID || !got.Pinned || !slices.Equal(got.RepoDigests, pulled.RepoDigests) {
		t.Fatalf("after reopen: %+v", got)
	}
}

func TestAmbiguousIDPrefix(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ctx := ctxT(t)
	var ids []string
	base := framework.MustBuildImage(t, framework.ImageSpec{})
	for i := range 17 {
		// Same layers, another config: a distinct image ID cheaply.
		variant, err := mutate.Config(base, v1.Config{Cmd: []string{strconv.Itoa(i)}})
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := reg.Push(t, fmt.Sprintf("test/many:%d", i), variant)
		img, err := s.Pull(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, img.ID)
	}
	// Among 17 IDs two share their first hex digit (pigeonhole: 16 digits).
	seen := map[byte]bool{}
	for _, id := range ids {
		c := id[len("sha256:")]
		if seen[c] {
			if _, err := s.Get(ctx, string(c)); !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ambiguous prefix %q: want InvalidArgument, got %v", c, err)
			}
			return
		}
		seen[c] = true
	}
	t.Fatal("unreachable: no shared first digit among 17 IDs")
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestLayerDownloadsAreParallelAndBounded(t *testing.T) {
	for _, limit := range []int{1, 2} {
		s := testStore(t, image.Options{MaxConcurrentDownloads: limit})
		// Throttled so that downloads overlap whenever they may.
		reg := framework.StartRegistry(t, framework.RegistryOptions{BytesPerSecond: 1 << 20})
		var files []framework.File
		for i := range 4 {
			files = append(files, framework.File{Path: fmt.Sprintf("layer%d", i), Content: randomBytes(256 << 10)})
		}
		ref, _ := reg.Push(t, "test/parallel:1", framework.MustBuildImage(t, framework.ImageSpec{Layers: 5, Files: files}))
		if _, err := s.Pull(ctxT(t), ref, nil); err != nil {
			t.Fatal(err)
		}
		if peak := reg.PeakBlobDownloads(); peak != limit {
			t.Errorf("max_concurrent_downloads %d: %d blob downloads ran at once", limit, peak)
		}
	}
}
