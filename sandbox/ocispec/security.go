package ocispec

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
)

// appArmorDefaultProfile is the name under which berth loads containerd's
// default AppArmor profile (containerd's is "cri-containerd.apparmor.d").
const appArmorDefaultProfile = "berth-default"

// localhostPrefix is the legacy "localhost/<ref>" form of a Localhost
// profile, which containerd strips.
const localhostPrefix = "localhost/"

// maskedPaths are the container's masked and read-only paths: none for a
// privileged container (oci.WithPrivileged), the security context's when it
// gives them, else containerd's default lists.
//
// containerd's CRI plugin replaces its defaults with empty lists before
// applying the security context's, so a request without them gets none;
// kubelet always sends them (its defaults for procMount Default, empty for
// Unmasked), so in practice both agree. berth keeps the defaults for a
// request without them, which is the safe reading of "not set".
func maskedPaths(t *template, sc *SecurityContext) (masked, readonly []string) {
	if sc.Privileged {
		return nil, nil
	}
	masked, readonly = t.maskedPaths, t.readonlyPaths
	if sc.MaskedPaths != nil {
		masked = sc.MaskedPaths
	}
	if sc.ReadonlyPaths != nil {
		readonly = sc.ReadonlyPaths
	}
	return slices.Clone(masked), slices.Clone(readonly)
}

// appArmor is containerd's GenerateApparmorSpecOpts. When the node has no
// AppArmor, unset, RuntimeDefault and Unconfined mean nothing and a
// Localhost profile is refused (containerd also refuses RuntimeDefault;
// berth treats it as satisfied, as CRI-O does). With AppArmor, unset means
// RuntimeDefault, which a privileged container does not get; berth loads
// containerd's default profile as "berth-default" the first time one is
// needed.
func (g *Generator) appArmor(sc *SecurityContext) (string, error) {
	p := sc.AppArmor
	if p != nil && p.Type != ProfileLocalhost && p.LocalhostRef != "" {
		return "", invalidf("apparmor: localhost_ref %q is only valid with profile type Localhost", p.LocalhostRef)
	}
	if !g.defaults.AppArmorEnabled {
		if p != nil && p.Type == ProfileLocalhost {
			return "", preconditionf("AppArmor is not enabled on this host; the container asks for AppArmor profile %q", p.LocalhostRef)
		}
		return "", nil
	}
	if p == nil {
		p = &Profile{Type: ProfileRuntimeDefault}
	}
	switch p.Type {
	case ProfileUnconfined:
		return "", nil
	case ProfileRuntimeDefault:
		if sc.Privileged {
			return "", nil
		}
		if err := g.loadAppArmorDefault(); err != nil {
			return "", err
		}
		return appArmorDefaultProfile, nil
	case ProfileLocalhost:
		name := strings.TrimPrefix(p.LocalhostRef, localhostPrefix)
		if name == "" {
			return "", invalidf("apparmor: profile type Localhost needs a localhost_ref")
		}
		ok, err := g.host.appArmorProfileLoaded(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", preconditionf("AppArmor is not enabled on this host (no profile list); the container asks for AppArmor profile %q", name)
		case err != nil:
			return "", preconditionf("cannot read the loaded AppArmor profiles: %v", err)
		case !ok:
			return "", notFoundf("AppArmor profile %q is not loaded on this node; load it (apparmor_parser) first", name)
		}
		return name, nil
	}
	return "", invalidf("apparmor: unknown profile type %d", p.Type)
}

// loadAppArmorDefault loads berth's default profile once per Generator (a
// failure is retried at the next container).
func (g *Generator) loadAppArmorDefault() error {
	g.appArmorMu.Lock()
	defer g.appArmorMu.Unlock()
	if g.appArmorLoaded {
		return nil
	}
	if err := g.host.loadAppArmorDefault(appArmorDefaultProfile); err != nil {
		return preconditionf("load the default AppArmor profile %q: %v", appArmorDefaultProfile, err)
	}
	g.appArmorLoaded = true
	return nil
}
