package sandbox

// Port forwarding: a stream joined to a TCP port on the pod's localhost,
// dialled inside the pod's network namespace (the host's for a host-network
// pod), as kubectl port-forward expects.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/berth-runtime/berth/internal/nsthread"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// portForwardDialTimeout bounds connecting to the pod's port.
const portForwardDialTimeout = 10 * time.Second

// PortForward joins stream to port on pod podID's localhost (IPv4, else
// IPv6) until either side ends or ctx does.
func (m *Manager) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("%w: port %d is not a TCP port", errdefs.ErrInvalidArgument, port)
	}
	sb, err := m.lookup(podID)
	if err != nil {
		return err
	}
	m.mu.RLock()
	state, id, netns, hostNet := sb.State, sb.ID, sb.NetNS, sb.Config.HostNetwork
	m.mu.RUnlock()
	if state != StateReady {
		return fmt.Errorf("%w: pod sandbox %s is %s, not ready: port-forward needs a ready pod", errdefs.ErrFailedPrecondition, id, state)
	}
	if !hostNet && netns == "" {
		return fmt.Errorf("%w: pod sandbox %s has no network namespace", errdefs.ErrFailedPrecondition, id)
	}
	conn, err := dialPodLocalhost(ctx, netns, hostNet, int(port))
	if err != nil {
		return fmt.Errorf("port-forward to port %d of pod %s: %w", port, id, err)
	}
	m.log.Debug("port-forward connected", "pod", id, "port", port)
	return joinStreams(ctx, conn, stream)
}

// dialPodLocalhost connects to localhost:port in the network namespace at
// netns (hostNet: the daemon's own). The socket is made on a thread inside
// the namespace, where it stays; it is used from any thread afterwards.
func dialPodLocalhost(ctx context.Context, netns string, hostNet bool, port int) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, portForwardDialTimeout)
	defer cancel()
	dial := func() (*net.TCPConn, error) {
		// One address at a time: a dual-stack dial would race a second
		// goroutine on another thread, outside the namespace.
		var errs []error
		for _, addr := range []string{"127.0.0.1", "::1"} {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
			if err == nil {
				return c.(*net.TCPConn), nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	if hostNet {
		return dial()
	}
	var conn *net.TCPConn
	err := nsthread.RunDisposable(func(int) error {
		fd, err := os.Open(netns)
		if err != nil {
			return fmt.Errorf("%w: the pod's network namespace: %v", errdefs.ErrFailedPrecondition, err)
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter the pod's network namespace: %w", err)
		}
		conn, err = dial()
		return err
	})
	return conn, err
}

// joinStreams copies both ways until the pod's side ends (or ctx does).
// The client's end of input is passed on as a half-close, so that a
// request-response protocol still gets its response. The copy towards the
// pod is not waited for: it may block reading the client's stream, which
// the streaming server closes once this returns.
func joinStreams(ctx context.Context, conn *net.TCPConn, stream io.ReadWriteCloser) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	go func() {
		if _, err := io.Copy(conn, stream); err != nil {
			// The client's stream broke (it is gone): end it all.
			_ = conn.Close()
			return
		}
		_ = conn.CloseWrite()
	}()
	_, err := io.Copy(stream, conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
		return err
	}
	return nil
}
