package network

// Interface counters of a pod's network namespace, for the CRI stats RPCs.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/berth-runtime/berth/internal/nsthread"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// DefaultInterface is the interface every pod gets from the pod network,
// which the CRI stats report as the pod's default one.
const DefaultInterface = podIfName

// IfaceStats are one interface's cumulative counters as the kernel keeps
// them: the numbers `ip -s link` and cAdvisor show.
type IfaceStats struct {
	Name                                 string
	RxBytes, RxErrors, TxBytes, TxErrors uint64
}

// InterfaceStats returns the counters of every interface but loopback in the
// network namespace pinned at netnsPin, in the kernel's order. A pin that is
// missing, or is no longer a namespace (a plain file left by a reboot or an
// unmount), is errdefs.ErrNotFound.
//
// The counters come from /proc/thread-self/net/dev read on a thread that
// entered the namespace. Neither obvious alternative works: /sys/class/net
// lists the interfaces of the namespace that mounted sysfs (the host's),
// whatever namespace the reader is in, and /proc/self/net is the view of the
// process's main thread.
func InterfaceStats(netnsPin string) ([]IfaceStats, error) {
	fd, err := unix.Open(netnsPin, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("%w: network namespace pin %s does not exist", errdefs.ErrNotFound, netnsPin)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open network namespace pin %s: %v", errdefs.ErrInternal, netnsPin, err)
	}
	defer unix.Close(fd)
	// Checked on the open file, so the pin cannot be swapped in between.
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return nil, fmt.Errorf("%w: statfs %s: %v", errdefs.ErrInternal, netnsPin, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return nil, fmt.Errorf("%w: %s is no longer a pinned network namespace", errdefs.ErrNotFound, netnsPin)
	}
	var data []byte
	err = nsthread.RunDisposable(func(int) error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("%w: enter network namespace %s: %v", errdefs.ErrInternal, netnsPin, err)
		}
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/dev")
		if err != nil {
			return fmt.Errorf("%w: read interface counters in %s: %v", errdefs.ErrInternal, netnsPin, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out, err := parseNetDev(string(data))
	if err != nil {
		return nil, fmt.Errorf("%w: interface counters of %s: %v", errdefs.ErrInternal, netnsPin, err)
	}
	return out, nil
}

// parseNetDev reads /proc/net/dev: two header lines, then per interface
// "name: " and 16 counters, receive (bytes packets errs drop fifo frame
// compressed multicast) then transmit (bytes packets errs drop fifo colls
// carrier compressed). Large counters can touch the colon, so split there:
// the kernel forbids ':' in interface names.
func parseNetDev(data string) ([]IfaceStats, error) {
	lines := strings.Split(data, "\n")
	if len(lines) < 2 || !strings.Contains(lines[1], "bytes") {
		return nil, fmt.Errorf("unexpected header %q", strings.Join(lines[:min(len(lines), 2)], "\\n"))
	}
	var out []IfaceStats
	for _, line := range lines[2:] {
		name, counters, ok := strings.Cut(line, ":")
		if !ok {
			if strings.TrimSpace(line) != "" {
				return nil, fmt.Errorf("unexpected line %q", line)
			}
			continue
		}
		name = strings.TrimSpace(name)
		// Every namespace has its own loopback, always named lo; cAdvisor
		// leaves it out of pod network stats the same way.
		if name == "lo" {
			continue
		}
		f := strings.Fields(counters)
		if len(f) < 16 {
			return nil, fmt.Errorf("interface %s: %d counters, want 16", name, len(f))
		}
		s := IfaceStats{Name: name}
		for _, c := range []struct {
			dst *uint64
			i   int
		}{{&s.RxBytes, 0}, {&s.RxErrors, 2}, {&s.TxBytes, 8}, {&s.TxErrors, 10}} {
			v, err := strconv.ParseUint(f[c.i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", name, err)
			}
			*c.dst = v
		}
		out = append(out, s)
	}
	return out, nil
}
