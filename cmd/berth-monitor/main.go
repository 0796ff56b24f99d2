// Command berth-monitor is berth's per-pod monitor: the parent of a pod's
// containers, which reaps them, records their exits and writes their logs
// while the berth daemon may come and go. The daemon starts it; see
// internal/monitor.
//
//	berth-monitor --dir <podStateDir> --pod <podID> [--log-level debug|info|warn|error]
package main

import (
	"os"

	"github.com/berth-runtime/berth/internal/libctinit"
	"github.com/berth-runtime/berth/internal/monitor"
)

func main() {
	// First: libcontainer re-executes this binary as every container's init.
	libctinit.RunIfInit()
	os.Exit(monitor.Main(os.Args[1:]))
}
