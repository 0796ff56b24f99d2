package main

import (
	"fmt"
	"net"
	"os"
)

// notifier tells systemd about the daemon's state (sd_notify(3)): with
// Type=notify in contrib/systemd/berth.service, `systemctl start berth`
// returns once the CRI socket serves, so kubelet ordered after berth finds
// it. Outside systemd ($NOTIFY_SOCKET unset) it does nothing.
type notifier struct {
	socket string
}

func newNotifier() notifier {
	// Unset, so that no child (a monitor, a container's helper) takes the
	// daemon's socket for its own.
	s := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return notifier{socket: s}
}

// Messages of sd_notify(3).
const (
	sdReady     = "READY=1"
	sdReloading = "RELOADING=1"
	sdStopping  = "STOPPING=1"
)

// notify sends state; an error is only worth a log line, the daemon runs
// on (systemd then times out or reports the unit as it sees it).
func (n notifier) notify(state string) error {
	if n.socket == "" {
		return nil
	}
	// A leading "@" is an abstract socket; Go's net package maps it.
	if n.socket[0] != '/' && n.socket[0] != '@' {
		return fmt.Errorf("NOTIFY_SOCKET %q is neither a path nor an abstract socket", n.socket)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
