package ocispec

import specs "github.com/opencontainers/runtime-spec/specs-go"

// Resources converts and checks the limits of an UpdateContainerResources
// the same way Generate does for a new container (pids default included).
// Device rules are left out: an update changes limits, not device access.
func (g *Generator) Resources(r *Resources) (*specs.LinuxResources, error) {
	lr, _, err := g.resources(r)
	if lr != nil {
		lr.Devices = nil
	}
	return lr, err
}
