// Package version reports what berth was built from: its own version (set by
// the Makefile through -ldflags, else read from the module build info) and the
// versions of the libraries that decide its behaviour.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is set at build time:
//
//	-ldflags "-X github.com/berth-runtime/berth/internal/version.Version=v0.1.0"
//
// It is a var only because -X can set nothing else; nothing assigns it at run time.
var Version = ""

// RuntimeName is what Version RPC callers see as the runtime's name.
const RuntimeName = "berth"

// CRIAPIVersion is the CRI API version berth serves.
const CRIAPIVersion = "v1"

// Berth returns the version of this build.
func Berth() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "devel-" + s.Value[:12]
			}
		}
	}
	return "devel"
}

// Component is one library version reported by `berth version`.
type Component struct {
	Name    string
	Version string
}

// Components lists berth, Go, and the key libraries compiled in.
func Components() []Component {
	out := []Component{{"berth", Berth()}, {"go", runtime.Version()}}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	wanted := []string{
		"k8s.io/cri-api",
		"github.com/opencontainers/runc",
		"github.com/containerd/containerd/v2",
		"github.com/containernetworking/cni",
		"google.golang.org/grpc",
	}
	for _, path := range wanted {
		for _, dep := range info.Deps {
			if dep.Path == path {
				v := dep.Version
				if dep.Replace != nil {
					v = dep.Replace.Version
				}
				out = append(out, Component{path, v})
			}
		}
	}
	return out
}
