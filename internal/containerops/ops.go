package containerops

// delete, kill and update: libcontainer calls on a container loaded from
// its state in --root.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxResourcesSize bounds update's input (the monitor's requests are at
// most 1 MiB).
const maxResourcesSize = 1 << 20

// load loads the container; a container without state is NotFound.
func load(o options) (*libcontainer.Container, error) {
	c, err := libcontainer.Load(o.root, o.id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, fmt.Errorf("%w: container %s: no libcontainer state in %s", errdefs.ErrNotFound, o.id, o.root)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", o.id, err)
	}
	return c, nil
}

// destroy kills whatever is left of the container and removes its cgroup
// and state. A container already gone is success.
func destroy(o options) error {
	c, err := load(o)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.Destroy(); err != nil {
		return fmt.Errorf("destroy container %s: %w", o.id, err)
	}
	return nil
}

// kill signals the container's init or, with all, every process of it.
// SIGKILL goes through libcontainer, which kills the whole cgroup when the
// container shares its PID namespace (runc 1.5 dropped `kill --all`; with a
// private PID namespace the kernel ends the rest with the init). Other
// signals are sent to each process of the cgroup. A container that is gone
// or stopped is success.
func kill(o options) error {
	c, err := load(o)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	s := unix.Signal(o.signal)
	if !o.all || s == unix.SIGKILL {
		err := c.Signal(s)
		if err == nil || errors.Is(err, libcontainer.ErrNotRunning) {
			return nil
		}
		return fmt.Errorf("signal container %s: %w", o.id, err)
	}
	pids, err := c.Processes()
	if err != nil {
		return fmt.Errorf("signal every process of container %s: %w", o.id, err)
	}
	var firstErr error
	for _, pid := range pids {
		if err := unix.Kill(pid, s); err != nil && err != unix.ESRCH && firstErr == nil {
			firstErr = fmt.Errorf("signal process %d of container %s: %w", pid, o.id, err)
		}
	}
	return firstErr
}

// update applies the resources read from in, as `runc update` does. A
// container that is not running is FailedPrecondition.
func update(o options, in io.Reader) error {
	var r *specs.LinuxResources
	dec := json.NewDecoder(&limitedReader{r: in, n: maxResourcesSize})
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("%w: update container %s: resources: %v", errdefs.ErrInvalidArgument, o.id, err)
	}
	if r == nil {
		return fmt.Errorf("%w: update container %s without resources", errdefs.ErrInvalidArgument, o.id)
	}
	c, err := load(o)
	if err != nil {
		return err
	}
	if err := c.Set(withResources(c.Config(), r)); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("%w: container %s is stopped", errdefs.ErrFailedPrecondition, o.id)
		}
		return fmt.Errorf("update container %s: %w", o.id, err)
	}
	return nil
}
