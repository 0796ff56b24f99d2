package ocispec

import (
	"math"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Supplemental groups policies of a pod.
const (
	policyMerge  = "Merge"
	policyStrict = "Strict"
)

// user resolves the process's user and groups the way containerd does
// (platformSpecOpts → oci.WithUser, then containerSpecOpts →
// WithAdditionalGIDs / WithSupplementalGroups):
//
//   - the user is RunAsUsername, else RunAsUser, else the image's USER;
//     RunAsGroup, which needs one of the first two, replaces the group;
//   - a numeric user without a passwd entry gets GID 0; a name must be in
//     the image's /etc/passwd, a group name in its /etc/group;
//   - the supplementary groups are the primary group, under Merge the
//     groups of /etc/group that list the user, and SupplementalGroups.
func (g *Generator) user(in Input, p *specs.Process, res *Result) error {
	sc := in.Container.Security
	policy := in.Pod.SupplementalGroupsPolicy
	if policy == "" {
		policy = policyMerge
	}
	if policy != policyMerge && policy != policyStrict {
		return invalidf("supplemental groups policy %q is neither %s nor %s", in.Pod.SupplementalGroupsPolicy, policyMerge, policyStrict)
	}
	userstr, err := userString(sc)
	if err != nil {
		return err
	}
	if userstr == "" {
		userstr = in.Image.User
	}
	db := &etcFiles{rootfs: in.Rootfs}
	u := p.User
	var gids []uint32
	if userstr != "" {
		if u.UID, u.GID, res.Username, err = db.resolve(userstr); err != nil {
			return err
		}
		gids = []uint32{u.GID} // containerd's ensureAdditionalGids
	}
	if policy == policyMerge {
		// The user whose groups count: the name or UID only, as
		// containerd's WithAdditionalGIDs (a group given with it is not).
		who := "0"
		switch {
		case sc.RunAsUsername != "":
			who = sc.RunAsUsername
		case sc.RunAsUser != nil:
			who = strconv.FormatInt(*sc.RunAsUser, 10)
		case in.Image.User != "":
			who, _, _ = strings.Cut(in.Image.User, ":")
		}
		member, err := db.groupsOf(who)
		if err != nil {
			return err
		}
		gids = append(append(gids, u.GID), member...)
	}
	for _, sg := range sc.SupplementalGroups {
		if sg < 0 || sg > math.MaxInt32 {
			return invalidf("supplemental group %d is out of range (0 to %d)", sg, math.MaxInt32)
		}
		gids = append(gids, uint32(sg))
	}
	slices.Sort(gids)
	u.AdditionalGids = slices.Compact(gids)
	p.User = u
	res.UID, res.GID, res.AdditionalGIDs = u.UID, u.GID, slices.Clone(u.AdditionalGids)
	if res.Username == "" {
		res.Username = db.nameOf(u.UID)
	}
	return nil
}

// userString is containerd's GenerateUserString: "" when the security
// context names no user.
func userString(sc SecurityContext) (string, error) {
	var userstr string
	if sc.RunAsUser != nil {
		if *sc.RunAsUser < 0 || *sc.RunAsUser > math.MaxInt32 {
			return "", invalidf("run_as_user %d is out of range (0 to %d)", *sc.RunAsUser, math.MaxInt32)
		}
		userstr = strconv.FormatInt(*sc.RunAsUser, 10)
	}
	if sc.RunAsUsername != "" {
		userstr = sc.RunAsUsername
	}
	if sc.RunAsGroup == nil {
		return userstr, nil
	}
	if *sc.RunAsGroup < 0 || *sc.RunAsGroup > math.MaxInt32 {
		return "", invalidf("run_as_group %d is out of range (0 to %d)", *sc.RunAsGroup, math.MaxInt32)
	}
	if userstr == "" {
		return "", invalidf("run_as_group %d is set without run_as_user or run_as_username; set a user too", *sc.RunAsGroup)
	}
	return userstr + ":" + strconv.FormatInt(*sc.RunAsGroup, 10), nil
}

// resolve is containerd's oci.WithUser for "user", "uid", "user:group",
// "uid:gid", "uid:group" and "user:gid".
func (db *etcFiles) resolve(userstr string) (uid, gid uint32, name string, err error) {
	parts := strings.Split(userstr, ":")
	if len(parts) > 2 {
		return 0, 0, "", invalidf("user %q is not of the form user[:group]", userstr)
	}
	uidPart, isUID, err := numericID(parts[0], "uid", userstr)
	if err != nil {
		return 0, 0, "", err
	}
	if len(parts) == 1 {
		if !isUID {
			return db.byName(parts[0])
		}
		// A UID without passwd entry runs with GID 0.
		u, ok, err := db.byUID(uidPart)
		if err != nil || !ok {
			return uidPart, 0, "", err
		}
		return uidPart, uint32(u.Gid), u.Name, nil
	}
	gid, isGID, err := numericID(parts[1], "gid", userstr)
	if err != nil {
		return 0, 0, "", err
	}
	uid = uidPart
	if !isUID && parts[0] != "" {
		if uid, _, name, err = db.byName(parts[0]); err != nil {
			return 0, 0, "", err
		}
	}
	// An empty group ("uid:") leaves GID 0, as in containerd.
	if !isGID && parts[1] != "" {
		if gid, err = db.gidOf(parts[1]); err != nil {
			return 0, 0, "", err
		}
	}
	return uid, gid, name, nil
}

// numericID parses an ID in runc's range (0 to MaxInt32); ok is false for
// a name.
func numericID(s, what, userstr string) (id uint32, ok bool, err error) {
	v, err := strconv.Atoi(s)
	if err != nil {
		if ne, isNum := err.(*strconv.NumError); isNum && ne.Err == strconv.ErrRange {
			return 0, false, invalidf("%s in user %q is out of range (0 to %d)", what, userstr, math.MaxInt32)
		}
		return 0, false, nil
	}
	if v < 0 || v > math.MaxInt32 {
		return 0, false, invalidf("%s in user %q is out of range (0 to %d)", what, userstr, math.MaxInt32)
	}
	return uint32(v), true, nil
}
