package ocispec

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxSeccompProfileBytes bounds a Localhost profile file.
const maxSeccompProfileBytes = 10 << 20

// seccomp is containerd's GenerateSeccompSpecOpts: none for a privileged
// container, for an unset profile (containerd's default
// unset_seccomp_profile) and for Unconfined; containerd's default profile
// for RuntimeDefault, made for the container's final capabilities; the
// file's profile for Localhost.
func (g *Generator) seccomp(sc *SecurityContext, caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	p := sc.Seccomp
	if sc.Privileged || p == nil {
		return nil, nil
	}
	if p.Type != ProfileLocalhost && p.LocalhostRef != "" {
		return nil, invalidf("seccomp: localhost_ref %q is only valid with profile type Localhost", p.LocalhostRef)
	}
	switch p.Type {
	case ProfileUnconfined:
		return nil, nil
	case ProfileRuntimeDefault, ProfileLocalhost:
	default:
		return nil, invalidf("seccomp: unknown profile type %d", p.Type)
	}
	if !g.host.seccomp() {
		return nil, preconditionf("seccomp is not available (berth built without -tags seccomp, or a kernel without seccomp); use an Unconfined seccomp profile")
	}
	if p.Type == ProfileRuntimeDefault {
		return g.defaultSeccomp(caps), nil
	}
	return g.localhostSeccomp(p.LocalhostRef)
}

// defaultSeccomp returns containerd's default profile for the bounding set,
// made once per set and shared: callers must not modify it. The profile
// depends only on the bounding capabilities (and the architecture).
func (g *Generator) defaultSeccomp(caps *specs.LinuxCapabilities) *specs.LinuxSeccomp {
	var bounding []string
	if caps != nil {
		bounding = caps.Bounding
	}
	key := capsKey(bounding)
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.seccompDefault[key]; ok {
		return p
	}
	p := seccomp.DefaultProfile(&specs.Spec{Process: &specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: slices.Clone(bounding)},
	}})
	g.seccompDefault[key] = p
	g.seccompBuilds++
	return p
}

// capsKey identifies a capability set whatever its order.
func capsKey(caps []string) string {
	sorted := slices.Sorted(slices.Values(caps))
	return strings.Join(slices.Compact(sorted), ",")
}

// localhostSeccomp reads a Localhost profile: an absolute path, or one
// relative to Defaults.SeccompProfileRoot (kubelet sends absolute paths
// under its own seccomp root; "localhost/" is stripped as containerd does).
// The file is read at every container start, as containerd does, so an
// edited profile takes effect for new containers.
func (g *Generator) localhostSeccomp(ref string) (*specs.LinuxSeccomp, error) {
	name := strings.TrimPrefix(ref, localhostPrefix)
	if name == "" {
		return nil, invalidf("seccomp: profile type Localhost needs a localhost_ref")
	}
	path := name
	if !filepath.IsAbs(name) {
		root := g.defaults.SeccompProfileRoot
		if root == "" {
			return nil, invalidf("seccomp: localhost profile %q is relative and no seccomp profile root is configured; give an absolute path", ref)
		}
		if !filepath.IsLocal(name) {
			return nil, invalidf("seccomp: localhost profile %q leaves the seccomp profile root %q", ref, root)
		}
		path = filepath.Join(root, name)
	}
	b, err := readLimited(path, maxSeccompProfileBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, notFoundf("seccomp profile %q does not exist on this node", path)
	case err != nil:
		return nil, invalidf("seccomp profile %q: %v", path, err)
	}
	var prof specs.LinuxSeccomp
	if err := json.Unmarshal(b, &prof); err != nil {
		return nil, invalidf("seccomp profile %q is not a valid JSON profile: %v", path, err)
	}
	// What runc will make of it: unknown actions, architectures, operators
	// or flags are refused now rather than at start.
	if _, err := specconv.SetupSeccomp(&prof); err != nil {
		return nil, invalidf("seccomp profile %q: %v", path, err)
	}
	return &prof, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if st.Size() > limit {
		return nil, errors.New("larger than 10 MiB")
	}
	return io.ReadAll(io.LimitReader(f, limit))
}
