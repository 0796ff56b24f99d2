package ocispec

import (
	"errors"
	"io"
	"io/fs"
	"slices"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// maxEtcFileBytes bounds what is read of the image's /etc/passwd and
// /etc/group (containerd's maxUserFileBytes).
const maxEtcFileBytes = 10 << 20

// etcFiles reads the image's /etc/passwd and /etc/group inside the rootfs,
// each at most once. The files are opened with pathrs-lite (openat2
// RESOLVE_IN_ROOT where the kernel has it), so a symlink in the image
// cannot lead outside the rootfs.
type etcFiles struct {
	rootfs string

	passwdRead, groupRead bool
	users                 []user.User
	groups                []user.Group
	// passwdMissing and groupMissing: the image has no such file.
	passwdMissing, groupMissing bool
}

func (db *etcFiles) passwd() ([]user.User, error) {
	if !db.passwdRead {
		r, err := db.open("/etc/passwd")
		switch {
		case errors.Is(err, fs.ErrNotExist):
			db.passwdMissing = true
		case err != nil:
			return nil, err
		default:
			db.users, err = user.ParsePasswd(r)
			r.Close()
			if err != nil {
				return nil, invalidf("cannot read the image's /etc/passwd: %v", err)
			}
		}
		db.passwdRead = true
	}
	return db.users, nil
}

func (db *etcFiles) group() ([]user.Group, error) {
	if !db.groupRead {
		r, err := db.open("/etc/group")
		switch {
		case errors.Is(err, fs.ErrNotExist):
			db.groupMissing = true
		case err != nil:
			return nil, err
		default:
			db.groups, err = user.ParseGroup(r)
			r.Close()
			if err != nil {
				return nil, invalidf("cannot read the image's /etc/group: %v", err)
			}
		}
		db.groupRead = true
	}
	return db.groups, nil
}

// open opens name inside the rootfs for reading: a regular file, of which
// at most maxEtcFileBytes are read.
func (db *etcFiles) open(name string) (io.ReadCloser, error) {
	h, err := pathrs.OpenInRoot(db.rootfs, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, invalidf("cannot open the image's %s: %v", name, err)
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, invalidf("cannot open the image's %s: %v", name, err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, invalidf("the image's %s is not a regular file", name)
	}
	if st.Size() > maxEtcFileBytes {
		f.Close()
		return nil, invalidf("the image's %s is larger than %d bytes", name, maxEtcFileBytes)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, maxEtcFileBytes), f}, nil
}

// byName finds a user that must exist.
func (db *etcFiles) byName(name string) (uid, gid uint32, _ string, err error) {
	users, err := db.passwd()
	if err != nil {
		return 0, 0, "", err
	}
	if db.passwdMissing {
		return 0, 0, "", invalidf("user %q not found: the image has no /etc/passwd; use a numeric user", name)
	}
	i := slices.IndexFunc(users, func(u user.User) bool { return u.Name == name })
	if i < 0 {
		return 0, 0, "", invalidf("user %q not found in the image's /etc/passwd", name)
	}
	return uint32(users[i].Uid), uint32(users[i].Gid), name, nil
}

// byUID finds the passwd entry of uid, if any.
func (db *etcFiles) byUID(uid uint32) (user.User, bool, error) {
	users, err := db.passwd()
	if err != nil {
		return user.User{}, false, err
	}
	i := slices.IndexFunc(users, func(u user.User) bool { return u.Uid == int(uid) })
	if i < 0 {
		return user.User{}, false, nil
	}
	return users[i], true, nil
}

// nameOf is the passwd name of uid, "" when unknown.
func (db *etcFiles) nameOf(uid uint32) string {
	u, _, _ := db.byUID(uid)
	return u.Name
}

// gidOf finds a group that must exist.
func (db *etcFiles) gidOf(name string) (uint32, error) {
	groups, err := db.group()
	if err != nil {
		return 0, err
	}
	if db.groupMissing {
		return 0, invalidf("group %q not found: the image has no /etc/group; use a numeric group", name)
	}
	i := slices.IndexFunc(groups, func(g user.Group) bool { return g.Name == name })
	if i < 0 {
		return 0, invalidf("group %q not found in the image's /etc/group", name)
	}
	return uint32(groups[i].Gid), nil
}

// groupsOf lists the GIDs of the groups whose member list names the user
// (a name, or a UID looked up in /etc/passwd), except the group named like
// the user: containerd's oci.WithAdditionalGIDs. Nothing when the user or
// the files are unknown.
func (db *etcFiles) groupsOf(who string) ([]uint32, error) {
	name := who
	if uid, isUID, err := numericID(who, "uid", who); err != nil {
		return nil, err
	} else if isUID {
		u, ok, err := db.byUID(uid)
		if err != nil || !ok {
			return nil, err
		}
		name = u.Name
	}
	groups, err := db.group()
	if err != nil {
		return nil, err
	}
	var gids []uint32
	for _, g := range groups {
		if g.Name != name && slices.Contains(g.List, name) {
			gids = append(gids, uint32(g.Gid))
		}
	}
	return gids, nil
}
