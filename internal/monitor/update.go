package monitor

// Updating a live container's cgroup limits: the update helper does what
// `runc update` does, from the OCI LinuxResources of the request, handed
// over as the raw JSON it came in.

import (
	"encoding/json"
	"fmt"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
)

// update applies the resources r (JSON) to container id, which must be
// created or running (both have a live cgroup).
func (m *monitor) update(id string, r json.RawMessage) error {
	if len(r) == 0 || string(r) == "null" {
		return fmt.Errorf("%w: update without resources", errdefs.ErrInvalidArgument)
	}
	c, err := m.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.status(c) == monitorapi.StatusStopped {
		return fmt.Errorf("%w: container %s is stopped", errdefs.ErrFailedPrecondition, id)
	}
	if _, err := m.runHelper(helperCall{op: "update", id: id, stdin: r}); err != nil {
		if errdefs.IsNotFound(err) {
			// Its state is gone: it ended meanwhile.
			return fmt.Errorf("%w: container %s is stopped", errdefs.ErrFailedPrecondition, id)
		}
		return err
	}
	return nil
}
