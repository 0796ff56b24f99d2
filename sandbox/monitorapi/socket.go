package monitorapi

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket address holds
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// viaDirFD calls fn with an address for path that fits a unix socket
// address: path itself when short enough, else /proc/self/fd/<n>/<name>
// through a descriptor of its directory (a deep state dir must not make
// the socket unusable).
func viaDirFD(path string, fn func(addr string) error) error {
	if len(path) <= maxSocketPath {
		return fn(path)
	}
	dir, err := os.OpenFile(filepath.Dir(path), os.O_RDONLY|unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)))
}

// Listen listens on a unix socket at path, however long the path is.
func Listen(path string) (*net.UnixListener, error) {
	var l *net.UnixListener
	err := viaDirFD(path, func(addr string) error {
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The listener removes the socket file at Close only by the name it
	// bound, which for a long path was a /proc/self/fd one: the caller
	// removes path itself.
	l.SetUnlinkOnClose(false)
	return l, nil
}
