package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdLock takes path's flock through a file of its own, as another process
// (or a child forked by a killed berth) would hold it.
func holdLock(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A lock released while berth waits is taken: a restart right after a kill
// does not fail because the killed berth's forking child still held it.
func TestAcquireLockWaitsForRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.lock")
	held := holdLock(t, path)
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(100 * time.Millisecond)
		held.Close()
	}()
	lock, err := acquireLock(path, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	<-released
	lock.Close()
}

// A lock that stays held is refused with a message that says what to do.
func TestAcquireLockHeldRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.lock")
	holdLock(t, path)
	if _, err := acquireLock(path, 0); err == nil || !strings.Contains(err.Error(), "another berth is already running") {
		t.Fatalf("acquireLock of a held lock: %v", err)
	}
}
