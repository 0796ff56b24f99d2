package ocispec

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// capabilities is containerd's WithCapabilities, WithPrivileged and
// WithoutAmbientCaps, with these differences:
//
//   - names may come with or without "CAP_" (containerd always prepends
//     it), and a name the capability library or, for an added one, this
//     kernel does not know is refused instead of being left to runc (which
//     ignores unknown ones with a warning);
//   - adding a capability berth itself does not hold is refused
//     (FailedPrecondition) instead of failing in runc's capset;
//   - AddAmbientCapabilities are honoured as KEP-2763 describes (each one
//     also in the inheritable, permitted, effective and bounding sets);
//     containerd 2.4 clears the ambient set.
//
// Bounding, effective and permitted are the same set; inheritable is empty
// unless ambient capabilities are asked for (containerd since
// CVE-2022-24769). A privileged container gets every capability berth
// holds, whatever it adds or drops, as in containerd.
func (g *Generator) capabilities(t *template, sc *SecurityContext) (*specs.LinuxCapabilities, error) {
	add, addAll, err := t.capList(sc.AddCapabilities, "capabilities.add", true)
	if err != nil {
		return nil, err
	}
	drop, dropAll, err := t.capList(sc.DropCapabilities, "capabilities.drop", false)
	if err != nil {
		return nil, err
	}
	ambient, ambientAll, err := t.capList(sc.AddAmbientCapabilities, "capabilities.add_ambient", true)
	if err != nil {
		return nil, err
	}
	if ambientAll {
		return nil, invalidf("capabilities.add_ambient cannot be \"ALL\"; name each ambient capability")
	}
	var current []string
	if sc.Privileged || addAll || len(add) > 0 || len(ambient) > 0 {
		if current, err = g.host.currentCaps(); err != nil {
			return nil, fmt.Errorf("read berth's own capabilities: %w", err)
		}
	}
	held := func(c, field string) error {
		if !slices.Contains(current, c) {
			return preconditionf("%s asks for %s, which berth itself does not hold on this node; remove it", field, c)
		}
		return nil
	}

	var caps []string
	if sc.Privileged {
		caps = slices.Clone(current)
	} else {
		caps = slices.Clone(t.caps)
		if addAll {
			caps = slices.Clone(current)
		}
		if dropAll {
			caps = nil
		}
		for _, c := range add {
			if err := held(c, "capabilities.add"); err != nil {
				return nil, err
			}
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
		caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drop, c) })
	}
	for _, c := range ambient {
		if err := held(c, "capabilities.add_ambient"); err != nil {
			return nil, err
		}
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	out := &specs.LinuxCapabilities{
		Bounding:  caps,
		Effective: slices.Clone(caps),
		Permitted: slices.Clone(caps),
	}
	if len(ambient) > 0 {
		out.Inheritable = slices.Clone(ambient)
		out.Ambient = ambient
	}
	return out, nil
}

// capList normalizes capability names to "CAP_X", reporting "ALL"
// (any case) apart. field names the request's list in errors; supported
// asks that this kernel has the capability (not needed to drop one).
func (t *template) capList(names []string, field string, supported bool) (caps []string, all bool, err error) {
	for _, n := range names {
		up := strings.ToUpper(strings.TrimSpace(n))
		if up == "ALL" {
			all = true
			continue
		}
		c := "CAP_" + strings.TrimPrefix(up, "CAP_")
		if !t.known[c] {
			return nil, false, invalidf("%s: unknown capability %q", field, n)
		}
		if supported && !t.supported[c] {
			return nil, false, invalidf("%s: capability %s is not supported by this node's kernel", field, c)
		}
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, all, nil
}
