// Package containerops is the libcontainer side of berth's per-pod monitor:
// short-lived helper processes, run as
//
//	<helper-binary> container-op <op> [flags]
//
// that do the libcontainer work (create, delete, update, kill --all) so that
// the long-lived monitor (internal/monitor) never links libcontainer. It is
// the conmon/runc split: the helper is `runc create` and friends, the monitor
// is conmon. The berth daemon binary is the helper (cmd/berth dispatches
// Command to Main) and, as it runs libctinit.RunIfInit first, also the
// containers' init.
//
// # Ops
//
//	create --root <dir> --id <id> --bundle <dir> [--systemd-cgroup] [--tty]
//	delete --root <dir> --id <id>
//	update --root <dir> --id <id>            (specs.LinuxResources JSON on stdin)
//	kill   --root <dir> --id <id> --signal N [--all]
//
// Every op also takes --log-level (debug, info, warn, error): libcontainer's
// and the container init's messages go to the helper's stderr at that level.
//
// create reads <bundle>/config.json and creates the container as `runc create`
// does: its init waits on the exec fifo in <root>/<id> until the monitor
// opens it (the monitor's start). The container's stdin, stdout and stderr are
// the inherited descriptors 3, 4 and 5 (pipes are chowned to the container's
// root user, anything else is used as is), or, with --tty, descriptor 3 is a
// unix socket over which the init sends the pseudo-terminal's master
// (libcontainer's console socket). On success create prints one Result line
// and exits 0 without waiting for the init, which the helper never reaps: once
// the helper is gone it is reparented to the monitor (a child subreaper).
//
// delete destroys the container (kills what is left of it, removes its
// cgroup and state); a container that does not exist is success. update
// applies the resources as `runc update` does. kill signals the init, or
// with --all every process of the container.
//
// # Output
//
// Success is exit status 0 (create prints its Result line first). Failure is
// a non-zero exit status after one Failure line on stdout; whatever create
// made is undone first. Both are single JSON lines.
package containerops

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
)

// Command is the argv[1] that makes a binary run Main.
const Command = "container-op"

// Result is create's answer. The monitor decodes it with a copy of this
// type (internal/monitor helperReply): keep the JSON names in step.
type Result struct {
	// Pid is the container's init, in the helper's (and the monitor's) PID
	// namespace.
	Pid int `json:"pid"`
	// CgroupPaths are the container's cgroup directories by controller
	// (libcontainer's cgroup manager GetPaths: "" is the cgroup v2 one).
	CgroupPaths map[string]string `json:"cgroup_paths,omitempty"`
	// OwnPidNS says the container has a PID namespace of its own, so that
	// SIGKILL to its init ends every process in it.
	OwnPidNS bool `json:"own_pid_ns"`
}

// Failure is the line printed when an op fails.
type Failure struct {
	Error string          `json:"error"`
	Code  monitorapi.Code `json:"code"`
}

// options are an op's flags.
type options struct {
	root, id, bundle string
	systemdCgroup    bool
	tty              bool
	signal           int
	all              bool
	logLevel         string
}

// Main runs the op in args (the command line after Command) and returns the
// process's exit status: 0 on success, 1 when the op failed, 2 for a bad
// command line. The caller must have run libctinit.RunIfInit first.
func Main(args []string) int {
	return run(args, os.Stdin, os.Stdout)
}

func run(args []string, stdin io.Reader, stdout io.Writer) int {
	op, o, err := parse(args)
	if err != nil {
		fail(stdout, fmt.Errorf("%w: %s %v", errdefs.ErrInvalidArgument, Command, err))
		return 2
	}
	setLogLevel(o.logLevel)
	// A monitor gone mid-call makes writing the answer fail with EPIPE
	// (then create undoes its work) rather than kill the helper. Caught,
	// not ignored: the container's init must not inherit SIGPIPE ignored.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	switch op {
	case "create":
		err = create(o, stdout)
	case "delete":
		err = destroy(o)
	case "update":
		err = update(o, stdin)
	case "kill":
		err = kill(o)
	}
	if err != nil {
		fail(stdout, err)
		return 1
	}
	return 0
}

// parse reads "<op> [flags]".
func parse(args []string) (string, options, error) {
	var o options
	if len(args) == 0 {
		return "", o, errors.New("needs an op (create, delete, update, kill)")
	}
	op := args[0]
	fs := flag.NewFlagSet(Command+" "+op, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.root, "root", "", "libcontainer's state root")
	fs.StringVar(&o.id, "id", "", "the container's ID")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	switch op {
	case "create":
		fs.StringVar(&o.bundle, "bundle", "", "the OCI bundle (config.json)")
		fs.BoolVar(&o.systemdCgroup, "systemd-cgroup", false, "cgroupsPath is slice:prefix:name")
		fs.BoolVar(&o.tty, "tty", false, "descriptor 3 is a console socket")
	case "kill":
		fs.IntVar(&o.signal, "signal", 0, "the signal number")
		fs.BoolVar(&o.all, "all", false, "signal every process of the container")
	case "delete", "update":
	default:
		return "", o, fmt.Errorf("unknown op %q", op)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return "", o, err
	}
	switch {
	case fs.NArg() > 0:
		return "", o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.root == "" || o.id == "":
		return "", o, errors.New("--root and --id must be set")
	case op == "create" && o.bundle == "":
		return "", o, errors.New("--bundle must be set")
	case op == "kill" && (o.signal <= 0 || o.signal > 64):
		return "", o, fmt.Errorf("bad --signal %d", o.signal)
	}
	return op, o, nil
}

// setLogLevel makes libcontainer (and the container init, whose messages it
// forwards) log at the monitor's level, to stderr.
func setLogLevel(level string) {
	logrus.SetOutput(os.Stderr)
	switch level {
	case "debug":
		logrus.SetLevel(logrus.DebugLevel)
	case "warn", "warning":
		logrus.SetLevel(logrus.WarnLevel)
	case "error":
		logrus.SetLevel(logrus.ErrorLevel)
	default:
		logrus.SetLevel(logrus.InfoLevel)
	}
}

// initLogLevel is the level a container's init logs at, in the numeric form
// libcontainer passes on.
func initLogLevel() string {
	return strconv.Itoa(int(logrus.GetLevel()))
}

// fail prints err as a Failure line.
func fail(w io.Writer, err error) {
	_ = writeLine(w, Failure{Error: err.Error(), Code: monitorapi.CodeOf(err)})
}

// writeLine writes v as one JSON line in a single write.
func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
