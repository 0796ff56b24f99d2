package image_test

import (
	"slices"
	"testing"

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
