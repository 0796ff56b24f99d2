package ocispec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// devices adds the CRI devices (containerd's customopts.WithDevices: the
// host path's symlinks resolved, then oci.WithDevices, which takes a
// directory's device nodes recursively) with a cgroup rule each, after the
// deny-all rule resources put first. A privileged container gets every
// device of the host and may use any (oci.WithHostDevices,
// WithAllDevicesAllowed). The standard devices (/dev/null, /dev/zero,
// /dev/tty, ...) and their rules are added by libcontainer itself, for the
// spec as for containerd's.
//
// Devices keep the host node's owner, as containerd does by default
// (device_ownership_from_security_context = false).
func (g *Generator) devices(c Container, l *specs.Linux) error {
	s := &specs.Spec{Linux: l}
	for _, d := range c.Devices {
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return invalidf("device %q: permissions %q may only hold r, w and m", d.HostPath, d.Permissions)
		}
		if !filepath.IsAbs(d.HostPath) {
			return invalidf("device host_path %q must be an absolute path", d.HostPath)
		}
		dst := d.ContainerPath
		if dst != "" {
			if !filepath.IsAbs(dst) || strings.ContainsRune(dst, 0) {
				return invalidf("device %q: container_path %q must be an absolute path", d.HostPath, d.ContainerPath)
			}
			dst = filepath.Clean(dst)
		}
		src, err := filepath.EvalSymlinks(d.HostPath)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return notFoundf("device %q does not exist on this node", d.HostPath)
		} else if badPathName(err) {
			return invalidf("device %q: %v", d.HostPath, err)
		} else if err != nil {
			return fmt.Errorf("device %q: %w", d.HostPath, err)
		}
		if err := oci.WithDevices(src, dst, perms)(context.Background(), nil, nil, s); err != nil {
			switch {
			case errors.Is(err, oci.ErrNotADevice):
				return invalidf("device %q is not a device node", d.HostPath)
			case errors.Is(err, fs.ErrNotExist):
				return notFoundf("device %q: %v", d.HostPath, err)
			}
			return fmt.Errorf("device %q: %w", d.HostPath, err)
		}
	}
	if !c.Security.Privileged {
		return nil
	}
	host, err := g.host.hostDevices()
	if err != nil {
		return fmt.Errorf("list the host's devices for a privileged container: %w", err)
	}
	// A CRI device already at a path keeps it (containerd would list the
	// node twice).
	for _, d := range host {
		if !slices.ContainsFunc(l.Devices, func(x specs.LinuxDevice) bool { return x.Path == d.Path }) {
			l.Devices = append(l.Devices, d)
		}
	}
	l.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	return nil
}
