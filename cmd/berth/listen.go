package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socketListener is the CRI socket with the lock that makes it ours.
type socketListener struct {
	*net.UnixListener
	lock *os.File
}

// Close stops listening (which unlinks the socket) and releases the lock.
func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.lock.Close()
	return err
}

// listenUnix creates the CRI socket: parent directory 0711 when berth creates
// it, socket 0660 (root and the socket's group: gid, or root's if gid < 0).
// A socket file that is left over from a crash is replaced only when
// nothing answers on it.
func listenUnix(path string, gid int) (*socketListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o711); err != nil { // MkdirAll honours the umask
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
	}
	// The lock serialises two daemons racing for the same stale socket.
	lock, err := acquireLock(path+".lock", lockWait)
	if err != nil {
		return nil, err
	}
	if err := removeStaleSocket(path); err != nil {
		lock.Close()
		return nil, err
	}
	// The umask makes the socket 0660 from its first moment; a chmod after
	// bind would leave a window with wider permissions.
	old := unix.Umask(0o117)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if gid >= 0 {
		// Before any client can have connected: nothing is served yet.
		if err := os.Lchown(path, -1, gid); err != nil {
			l.Close()
			lock.Close()
			return nil, fmt.Errorf("give socket %s to group %d (listen_group): %w", path, gid, err)
		}
	}
	return &socketListener{UnixListener: l, lock: lock}, nil
}

func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check socket %s: %w", path, err)
	}
	if st.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: move it away or choose another --listen", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another process is serving on %s: stop it first, or give this berth its own --listen, --root and --state", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether %s is in use (%v): remove it by hand if no runtime is running", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// lockWait is how long berth waits for a lock another process holds. A
// berth that was just killed can leave its lock held for a moment: a child
// it was forking keeps a copy of the lock's file descriptor until that child
// execs (close-on-exec), and a supervisor restarts berth at once.
const lockWait = 5 * time.Second

// acquireLock takes an exclusive flock on path, waiting up to wait while
// another process holds it. The kernel drops it when the process dies, so a
// crash never leaves a lock that blocks restart.
func acquireLock(path string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // flock has no timed wait
	}
	f.Close()
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("another berth is already running with %s (lock %s is held): stop it first, or give this berth its own --root, --state and --listen", filepath.Dir(path), path)
	}
	return nil, fmt.Errorf("lock %s: %w", path, err)
}
