package sandbox

import (
	"testing"

	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
)

func TestValidateUserNamespace(t *testing.T) {
	ok := []ocispec.IDMapping{{ContainerID: 0, HostID: 1 << 20, Length: 65536}}
	for name, c := range map[string]struct {
		uids, gids []ocispec.IDMapping
		valid      bool
	}{
		"kubelet's":        {ok, ok, true},
		"no uids":          {nil, ok, false},
		"empty range":      {[]ocispec.IDMapping{{ContainerID: 0, HostID: 1 << 20, Length: 0}}, ok, false},
		"past 32 bits":     {ok, []ocispec.IDMapping{{ContainerID: 0, HostID: 1<<32 - 10, Length: 65536}}, false},
		"host root mapped": {[]ocispec.IDMapping{{ContainerID: 0, HostID: 0, Length: 65536}}, ok, false},
		"root unmapped":    {ok, []ocispec.IDMapping{{ContainerID: 1, HostID: 1 << 20, Length: 65536}}, false},
		"two ranges":       {[]ocispec.IDMapping{{ContainerID: 0, HostID: 1 << 20, Length: 1000}, {ContainerID: 1000, HostID: 2 << 20, Length: 1000}}, ok, true},
	} {
		err := ValidateUserNamespace(&ocispec.UserNamespace{UIDs: c.uids, GIDs: c.gids})
		if c.valid != (err == nil) || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := idMapLabel([]ocispec.IDMapping{{ContainerID: 0, HostID: 100000, Length: 1000}, {ContainerID: 1000, HostID: 200000, Length: 10}}); got != "0:100000:1000,1000:200000:10" {
		t.Errorf("idMapLabel = %q", got)
	}
}
