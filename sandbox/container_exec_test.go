package sandbox

import (
	"errors"
	"testing"
)

// The error an exec got in CI when it started while the container's init
// was between thread group leaders, and others that must not be retried.
func TestNSJoinFailed(t *testing.T) {
	for msg, want := range map[string]bool{
		"exec in container 245d05: unable to start container process: error executing setns process: exit status 1; " +
			"runc init error(s): nsexec-1[13064]: failed to open /proc/12772/ns/ipc: No such file or directory; " +
			"nsexec-0[13062]: failed to sync with stage-1: next state": true,
		"nsexec-1[1]: failed to open /proc/1/ns/net: No such file or directory":                              true,
		"nsexec-1[1]: failed to open /proc/1/ns/ipc: Permission denied":                                      false,
		`unable to start container process: exec: "nope": executable file not found in $PATH`:                false,
		"exec in container x: container x has no libcontainer state in /run/berth/sandboxes/y/runc":          false,
		"failed to open /proc/self/ns/ipc: No such file or directory (not a pid: not the init's namespaces)": false,
	} {
		if got := nsJoinFailed(errors.New(msg)); got != want {
			t.Errorf("nsJoinFailed(%q) = %v, want %v", msg, got, want)
		}
	}
}
