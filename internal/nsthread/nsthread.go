// Package nsthread runs code on an OS thread that is thrown away afterwards,
// for work that changes the thread's namespaces (unshare, setns): no other
// goroutine may ever run on such a thread.
package nsthread

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// RunDisposable runs fn on an OS thread of its own that is discarded after
// fn returns, so namespace changes fn makes never reach another goroutine.
// fn gets the thread's ID (for /proc/<pid>/task/<tid>/ns/*).
//
// The goroutine locks its thread and never unlocks it: the Go runtime then
// ends the thread with the goroutine. Except for the main thread, which the
// runtime cannot end: it parks it for good instead, still in whatever
// namespaces fn entered, and /proc/self/ns (the main thread's view) would
// then show a pod's namespaces for the rest of the process's life. So on the
// main thread the work moves to a second goroutine, which cannot be
// scheduled there while the first holds it locked, and the main thread,
// untouched, is unlocked and reused.
func RunDisposable(fn func(tid int) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid := unix.Gettid()
		if tid == unix.Getpid() {
			errc <- RunDisposable(fn)
			runtime.UnlockOSThread()
			return
		}
		errc <- fn(tid)
	}()
	return <-errc
}
