// Command berth-monitor is berth's per-pod monitor: the parent of a pod's
// containers, which reaps them, records their exits and writes their logs
// while the berth daemon may come and go. The daemon starts it; see
// internal/monitor. Its libcontainer work is done by the helper binary
// (the berth daemon's own executable, run as `<helper> container-op ...`);
// the monitor links neither libcontainer nor cgo.
//
//	berth-monitor --dir <podStateDir> --pod <podID> --helper <path> [--log-level debug|info|warn|error]
//	berth-monitor pod-holder [--dir <podStateDir>]
package main

import (
	"os"

	"github.com/berth-runtime/berth/internal/monitor"
	"github.com/berth-runtime/berth/internal/podholder"
)

func main() {
	// The same lean binary holds pods' PID namespaces (pid: POD). Its
	// further arguments (--dir <podStateDir>) only name its pod, for the
	// daemon's search for leftovers.
	if len(os.Args) >= 2 && os.Args[1] == podholder.Command {
		os.Exit(podholder.Run())
	}
	os.Exit(monitor.Main(os.Args[1:]))
}
