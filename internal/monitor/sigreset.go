package monitor

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelSigaction is struct sigaction as rt_sigaction(2) takes it on Linux.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// resetIgnoredSignals sets every signal this process inherited as ignored
// back to its default action. An ignored disposition survives fork and
// exec, so without this a monitor started by a parent that ignores, say,
// signal 32 would pass that on to every container. The Go runtime handles
// most signals itself (handled ones are reset by exec), but not those it
// leaves to libc (32 and 33), which keep what was inherited.
func resetIgnoredSignals() {
	for sig := 1; sig <= 64; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		var old kernelSigaction
		if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); errno != 0 {
			continue
		}
		if old.handler != 1 { // SIG_IGN
			continue
		}
		dfl := kernelSigaction{} // SIG_DFL
		_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	}
}
