package monitor

// Running the container helper, `<helper> container-op <op> --root <root>
// --id <id> ...` (internal/containerops): the monitor's libcontainer work
// happens in these short-lived processes, so that the monitor never links
// libcontainer nor grows with its allocations.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// maxHelperReply bounds a helper's reply line.
const maxHelperReply = 64 << 10

// helperReply is the line a helper prints: containerops.Result after a
// successful create, containerops.Failure when an op failed. Keep the JSON
// names in step with those types (the monitor does not import the package,
// which links libcontainer).
type helperReply struct {
	Pid         int               `json:"pid"`
	CgroupPaths map[string]string `json:"cgroup_paths"`
	OwnPidNS    bool              `json:"own_pid_ns"`
	Error       string            `json:"error"`
	Code        monitorapi.Code   `json:"code"`
}

// helperCall is one run of the helper.
type helperCall struct {
	op, id string
	args   []string
	// stdin is written to the helper's stdin; nil gives it /dev/null.
	stdin []byte
	// files become the helper's descriptors 3, 4, ...; the caller keeps
	// (and closes) its own copies.
	files []*os.File
	// early returns as soon as a successful create reported its
	// container, without waiting for the helper to exit: the container's
	// init may then end, and be reaped, before or after the helper.
	early bool
}

// runHelper runs the helper and returns its reply; a failed op is an error
// of the class the helper gave.
func (m *monitor) runHelper(call helperCall) (reply helperReply, err error) {
	start := time.Now()
	defer func() {
		slog.Debug("container helper", "op", call.op, "id", call.id, "took", time.Since(start), "error", err)
	}()
	argv := append([]string{m.helper, "container-op", call.op, "--root", m.root, "--id", call.id, "--log-level", m.logLevel}, call.args...)
	outR, outW, err := os.Pipe()
	if err != nil {
		return reply, err
	}
	defer outR.Close()
	var in, inW *os.File
	if call.stdin != nil {
		in, inW, err = os.Pipe()
	} else {
		in, err = os.Open(os.DevNull)
	}
	if err != nil {
		_ = outW.Close()
		return reply, err
	}
	status := make(chan unix.WaitStatus, 1)
	_, err = m.reaper.start(argv, m.helperEnv, append([]*os.File{in, outW, os.Stderr}, call.files...), func(ws unix.WaitStatus) {
		status <- ws
	})
	_, _ = in.Close(), outW.Close()
	if err != nil {
		if inW != nil {
			_ = inW.Close()
		}
		return reply, fmt.Errorf("run the container helper %s: %w", m.helper, err)
	}
	if inW != nil {
		go func() {
			// EPIPE if the helper failed before it read everything: its
			// answer says why.
			_, _ = inW.Write(call.stdin)
			_ = inW.Close()
		}()
	}

	line, readErr := readLine(outR)
	var parseErr error
	if len(line) > 0 {
		if err := json.Unmarshal(line, &reply); err != nil {
			reply, parseErr = helperReply{}, fmt.Errorf("unreadable answer %q: %v", line, err)
		}
	}
	if call.early && reply.Error == "" && reply.Pid > 0 && parseErr == nil {
		return reply, nil
	}
	ws := <-status
	switch {
	case reply.Error != "":
		return reply, &helperError{msg: reply.Error, class: classOf(reply.Code)}
	case !ws.Exited() || ws.ExitStatus() != 0:
		err := fmt.Errorf("container helper %s %s: %s", call.op, call.id, describeStatus(ws))
		if parseErr != nil {
			err = fmt.Errorf("%w; %v", err, parseErr)
		} else if readErr != nil && !errors.Is(readErr, io.EOF) {
			err = fmt.Errorf("%w; reading its answer: %v", err, readErr)
		}
		return reply, err
	case parseErr != nil:
		return reply, fmt.Errorf("container helper %s %s: %w", call.op, call.id, parseErr)
	case call.early:
		return reply, fmt.Errorf("container helper %s %s: it ended without reporting the container", call.op, call.id)
	}
	return reply, nil
}

// helperEnvKeep are the variables of the monitor's environment a helper
// gets; the rest (the daemon's, in production) is no business of
// libcontainer's, and each variable costs the monitor an allocation at
// every run.
var helperEnvKeep = []string{"PATH", "GODEBUG", "GOTRACEBACK", "GORACE", "TMPDIR", "DBUS_SYSTEM_BUS_ADDRESS", "XDG_RUNTIME_DIR"}

// helperEnvironment is the environment of the helpers: the kept variables
// and any BERTH_* one. Not the monitor's GOMAXPROCS=1: a create runs about
// a third faster on every CPU.
func helperEnvironment() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(helperEnvKeep, k) || strings.HasPrefix(k, "BERTH_") {
			env = append(env, kv)
		}
	}
	return env
}

// readLine reads up to the first newline (without it), EOF or
// maxHelperReply bytes.
func readLine(r io.Reader) ([]byte, error) {
	var chunk [512]byte
	var buf []byte
	for len(buf) < maxHelperReply {
		n, err := r.Read(chunk[:])
		buf = append(buf, chunk[:n]...)
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[:i], nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, fmt.Errorf("answer longer than %d bytes", maxHelperReply)
}

// helperError is a helper's failure: its message as is, classified for
// monitorapi.CodeOf.
type helperError struct {
	msg   string
	class error
}

func (e *helperError) Error() string { return e.msg }
func (e *helperError) Unwrap() error { return e.class }

// classOf is the errdefs class of a monitorapi.Code.
func classOf(c monitorapi.Code) error {
	switch c {
	case monitorapi.CodeNotFound:
		return errdefs.ErrNotFound
	case monitorapi.CodeAlreadyExists:
		return errdefs.ErrAlreadyExists
	case monitorapi.CodeInvalidArgument:
		return errdefs.ErrInvalidArgument
	case monitorapi.CodeFailedPrecondition:
		return errdefs.ErrFailedPrecondition
	case monitorapi.CodeInternal:
		return errdefs.ErrInternal
	}
	return errdefs.ErrUnknown
}
