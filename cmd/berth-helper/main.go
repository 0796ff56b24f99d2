// Command berth-helper is the libcontainer helper the per-pod monitors run
// (`berth-helper container-op create|start|kill|...`) and, through
// libcontainer's re-exec, every container's init (`berth-helper init`).
//
// It does what `berth container-op` and `berth init` do, in a binary that
// links libcontainer and little else: every container start runs the helper
// twice, and the daemon's binary spends 20-25 ms of each run initialising
// the packages of a gRPC server, containerd and Kubernetes that a helper
// never uses. berth uses the berth-helper next to its own binary when there
// is one, else its own binary.
package main

import (
	"fmt"
	"os"

	"github.com/berth-runtime/berth/internal/containerops"
	"github.com/berth-runtime/berth/internal/libctinit"
)

func main() {
	// Must come first: as a container's init this process never returns here.
	libctinit.RunIfInit()
	if len(os.Args) > 1 && os.Args[1] == containerops.Command {
		os.Exit(containerops.Main(os.Args[2:]))
	}
	fmt.Fprintf(os.Stderr, "berth-helper is run by berth's pod monitors, not by hand (usage: berth-helper %s <op> ...)\n", containerops.Command)
	os.Exit(2)
}
