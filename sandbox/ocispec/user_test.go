package ocispec

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestUserResolution(t *testing.T) {
	for _, tc := range []struct {
		name       string
		imageUser  string
		runAsUser  *int64
		runAsGroup *int64
		username   string
		supp       []int64
		policy     string
		uid, gid   uint32
		gids       []uint32
		wantName   string
	}{
		{name: "no user is root", uid: 0, gid: 0, gids: []uint32{0, 10}, wantName: "root"},
		{name: "image user name", imageUser: "alice", uid: 1000, gid: 1000, gids: []uint32{10, 50, 1000, 1001}, wantName: "alice"},
		{name: "image uid with passwd entry", imageUser: "1000", uid: 1000, gid: 1000, gids: []uint32{10, 50, 1000, 1001}, wantName: "alice"},
		{name: "image name:group", imageUser: "alice:staff", uid: 1000, gid: 50, gids: []uint32{10, 50, 1001}, wantName: "alice"},
		{name: "image uid:gid", imageUser: "1000:29", uid: 1000, gid: 29, gids: []uint32{10, 29, 50, 1001}, wantName: "alice"},
		{name: "image name:gid", imageUser: "bob:1000", uid: 1001, gid: 1000, gids: []uint32{29, 50, 1000}, wantName: "bob"},
		{name: "image uid without entry gets gid 0", imageUser: "4242", uid: 4242, gid: 0, gids: []uint32{0}},
		{name: "image uid:gid without entries", imageUser: "4242:4343", uid: 4242, gid: 4343, gids: []uint32{4343}},
		{name: "run_as_user overrides the image", imageUser: "alice", runAsUser: ptr[int64](1001), uid: 1001, gid: 1001, gids: []uint32{29, 50, 1001}, wantName: "bob"},
		{name: "run_as_group replaces the primary group", runAsUser: ptr[int64](1000), runAsGroup: ptr[int64](5), uid: 1000, gid: 5, gids: []uint32{5, 10, 50, 1001}, wantName: "alice"},
		{name: "run_as_group over the image's group", imageUser: "alice:staff", runAsUser: ptr[int64](1000), runAsGroup: ptr[int64](7), uid: 1000, gid: 7, gids: []uint32{7, 10, 50, 1001}, wantName: "alice"},
		{name: "run_as_username", username: "bob", uid: 1001, gid: 1001, gids: []uint32{29, 50, 1001}, wantName: "bob"},
		{name: "run_as_username wins over run_as_user", username: "bob", runAsUser: ptr[int64](1000), uid: 1001, gid: 1001, gids: []uint32{29, 50, 1001}, wantName: "bob"},
		{name: "run_as_username with group", username: "bob", runAsGroup: ptr[int64](7), uid: 1001, gid: 7, gids: []uint32{7, 29, 50}, wantName: "bob"},
		{name: "merge adds supplemental groups, deduplicated", imageUser: "alice", supp: []int64{50, 3000, 3000}, uid: 1000, gid: 1000, gids: []uint32{10, 50, 1000, 1001, 3000}, wantName: "alice"},
		{name: "explicit Merge", policy: "Merge", imageUser: "bob", uid: 1001, gid: 1001, gids: []uint32{29, 50, 1001}, wantName: "bob"},
		{name: "strict: primary and supplemental only", policy: "Strict", imageUser: "alice", supp: []int64{7, 3, 7}, uid: 1000, gid: 1000, gids: []uint32{3, 7, 1000}, wantName: "alice"},
		// containerd: with no user at all WithUser is not applied, so
		// Strict does not even add the primary group 0.
		{name: "strict without any user", policy: "Strict", supp: []int64{3}, uid: 0, gid: 0, gids: []uint32{3}, wantName: "root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := newTestGenerator(t, Defaults{})
			in := baseInput(t)
			in.Image.User = tc.imageUser
			in.Pod.SupplementalGroupsPolicy = tc.policy
			sc := &in.Container.Security
			sc.RunAsUser, sc.RunAsGroup, sc.RunAsUsername, sc.SupplementalGroups = tc.runAsUser, tc.runAsGroup, tc.username, tc.supp
			res := mustGenerate(t, g, in)
			u := res.Spec.Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.gids) {
				t.Errorf("user = %d:%d groups %v; want %d:%d groups %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.gids)
			}
			if res.UID != u.UID || res.GID != u.GID || !slices.Equal(res.AdditionalGIDs, u.AdditionalGids) {
				t.Errorf("result %d:%d %v differs from the spec's", res.UID, res.GID, res.AdditionalGIDs)
			}
			if res.Username != tc.wantName {
				t.Errorf("username = %q, want %q", res.Username, tc.wantName)
			}
		})
	}
}

func TestUserErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		imageUser  string
		runAsUser  *int64
		runAsGroup *int64
		username   string
		supp       []int64
		policy     string
		words      []string
	}{
		{name: "unknown image user", imageUser: "carol", words: []string{`user "carol" not found in the image's /etc/passwd`}},
		{name: "unknown run_as_username", username: "carol", words: []string{`"carol"`}},
		{name: "unknown group", imageUser: "alice:nogroup", words: []string{`group "nogroup" not found`}},
		{name: "too many colons", imageUser: "a:b:c", words: []string{`"a:b:c"`}},
		{name: "uid out of range", imageUser: "99999999999", words: []string{"out of range"}},
		{name: "gid out of range", imageUser: "1:4294967296", words: []string{"out of range"}},
		{name: "negative run_as_user", runAsUser: ptr[int64](-1), words: []string{"run_as_user -1"}},
		{name: "run_as_user too large", runAsUser: ptr[int64](math.MaxInt32 + 1), words: []string{"run_as_user"}},
		{name: "negative run_as_group", runAsUser: ptr[int64](1), runAsGroup: ptr[int64](-5), words: []string{"run_as_group -5"}},
		{name: "run_as_group without user", runAsGroup: ptr[int64](5), words: []string{"without run_as_user"}},
		{name: "negative supplemental group", supp: []int64{-1}, words: []string{"supplemental group -1"}},
		{name: "unknown policy", policy: "Loose", words: []string{`"Loose"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := newTestGenerator(t, Defaults{})
			in := baseInput(t)
			in.Image.User = tc.imageUser
			in.Pod.SupplementalGroupsPolicy = tc.policy
			sc := &in.Container.Security
			sc.RunAsUser, sc.RunAsGroup, sc.RunAsUsername, sc.SupplementalGroups = tc.runAsUser, tc.runAsGroup, tc.username, tc.supp
			_, err := g.Generate(in)
			wantErr(t, err, isInvalid, tc.words...)
		})
	}
}

func TestUserWithoutEtcFiles(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Rootfs = t.TempDir() // no /etc at all
	in.Image.User = "1234"
	res := mustGenerate(t, g, in)
	if res.UID != 1234 || res.GID != 0 || !slices.Equal(res.AdditionalGIDs, []uint32{0}) || res.Username != "" {
		t.Errorf("numeric user without passwd = %d:%d %v %q; want 1234:0 [0] \"\"", res.UID, res.GID, res.AdditionalGIDs, res.Username)
	}
	in.Image.User = "alice"
	_, err := g.Generate(in)
	wantErr(t, err, isInvalid, `"alice"`, "no /etc/passwd")

	in.Image.User = "1234:staff"
	_, err = g.Generate(in)
	wantErr(t, err, isInvalid, `"staff"`, "no /etc/group")
}

// The image's /etc/passwd is resolved inside the rootfs: an absolute
// symlink stays in it, and cannot reach the host's files.
func TestEtcFilesStayInRootfs(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})

	in := baseInput(t)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "real/passwd"), "zed:x:777:778::/:/bin/sh\n")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/real/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	in.Rootfs = root
	in.Image.User = "zed"
	res := mustGenerate(t, g, in)
	if res.UID != 777 || res.GID != 778 {
		t.Errorf("zed = %d:%d, want 777:778 (symlink resolved inside the rootfs)", res.UID, res.GID)
	}

	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "passwd"), "evil:x:666:666::/:/bin/sh\n")
	root2 := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root2, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(root2, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	in.Rootfs = root2
	in.Image.User = "evil"
	_, err := g.Generate(in)
	wantErr(t, err, isInvalid, `"evil"`)

	root3 := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root3, "etc/passwd"), 0o755); err != nil {
		t.Fatal(err)
	}
	in.Rootfs = root3
	in.Image.User = "alice"
	_, err = g.Generate(in)
	wantErr(t, err, isInvalid, "not a regular file")
}
