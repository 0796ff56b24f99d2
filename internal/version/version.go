// Package version reports what berth was built from: its own version (set by
// the Makefile through -ldflags, else read from the module build info) and the
// versions of the libraries that decide its behaviour.
package version

import (
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
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

// Berth returns the version of this build, always a semantic version: the
// CRI requires one of runtime_version, and kubelet shows a runtime whose
// version does not parse as "Unknown". A build from an untagged checkout
// (git describe gives "1807a43-dirty") is "0.0.0-dev+1807a43-dirty".
func Berth() string {
	if Version != "" {
		return semantic(Version)
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			return semantic(v)
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return semantic(s.Value[:12])
			}
		}
	}
	return devVersion
}

// devVersion is the version of a build that knows nothing of its origin.
const devVersion = "0.0.0-dev"

// semVer matches a semantic version (semver.org 2.0.0), with the leading
// "v" that Go modules and git tags use.
var semVer = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(-(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?` +
	`(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?$`)

// semantic returns v if it is a semantic version, else v as the build
// metadata of the development version (characters semver does not allow
// there become "-").
func semantic(v string) string {
	if semVer.MatchString(v) {
		return v
	}
	meta := strings.Trim(strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, v), ".")
	for strings.Contains(meta, "..") {
		meta = strings.ReplaceAll(meta, "..", ".")
	}
	if meta == "" {
		return devVersion
	}
	return devVersion + "+" + meta
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
