// Package monitorapi is the wire protocol between the berth daemon and its
// per-pod monitors (cmd/berth-monitor).
//
// A monitor listens on a unix socket (SocketName in its pod directory).
// Every call is one connection: the client writes one Request as a JSON
// line and reads one Response line, except OpEvents, whose connection stays
// open and carries one Event per line until either side closes it, and
// OpAttach, whose connection carries a container's stdio after the answer.
//
// # Attach
//
// An OpAttach request names the container (ID) and the streams wanted
// (Attach). Created and running containers may be attached; an unknown one
// is CodeNotFound, a stopped one CodeFailedPrecondition. The monitor
// answers one Response line carrying the container's State; after a
// successful answer (and only then: the client sends nothing before it)
// the connection carries frames in both directions: a kind byte, the
// payload's length as 4 bytes big-endian, the payload (at most
// MaxFramePayload bytes; a longer length is a protocol error and ends the
// connection).
//
// The monitor sends FrameStdout and FrameStderr frames (only for the
// streams asked for; a terminal's output is all stdout): the container's
// raw output from the moment of attach, no earlier output, not
// CRI-formatted. Once the output ends (the process exited and its output
// was copied) the monitor sends what is left and closes the connection:
// the client reads a clean EOF. An attacher that falls too far behind
// (MaxAttachBacklog) is dropped: its connection is closed (which its
// client cannot tell from the end of the output, unless a frame was cut),
// and the log is never held back for it. A container created without a
// LogPath nor a TTY has no output to attach to.
//
// The client sends FrameStdin (written to the container's stdin, whole
// frames at a time; discarded unless the container was created with Stdin
// and this attach asked for Stdin), FrameStdinClosed (with StdinOnce the
// container's stdin is closed so its process reads EOF, otherwise this
// attacher only stops sending stdin) and FrameResize (width and height as
// two big-endian uint16; applied to a terminal, ignored otherwise).
// Closing the connection detaches: the container is never signalled. With
// StdinOnce an attacher that asked for stdin and goes without
// FrameStdinClosed closes the container's stdin too. A terminal is never
// closed for StdinOnce (it is also the container's output; containerd and
// CRI-O do not close it either): its stdin just ends for that attacher.
// Several clients may attach at once; each gets all the output.
//
// The package is linked into the monitor, whose memory is budgeted per pod:
// it must depend on the standard library, golang.org/x/sys/unix, the OCI
// runtime-spec types and containerd/errdefs only.
package monitorapi

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SocketName is the monitor's socket, in the directory given to it.
const SocketName = "monitor.sock"

// Version is bumped on incompatible protocol changes; a daemon refuses a
// monitor that speaks another version (see Hello).
const Version = 1

// Op names a call.
type Op string

// The calls a monitor answers.
const (
	// OpHello answers Hello: protocol version and the monitor's pid.
	OpHello Op = "hello"
	// OpCreate creates a container from the OCI bundle in Create (like
	// `runc create`): its init process waits until OpStart.
	OpCreate Op = "create"
	// OpStart lets a created container's process run (like `runc start`).
	OpStart Op = "start"
	// OpKill sends Signal to the container's init process (All: to every
	// process of the container). Killing a stopped container succeeds.
	OpKill Op = "kill"
	// OpState answers the container's State.
	OpState Op = "state"
	// OpList answers the States of every container the monitor holds.
	OpList Op = "list"
	// OpDelete forgets a stopped (or never started) container: its
	// libcontainer state, cgroup and log file handle. A running container
	// is FailedPrecondition; an unknown one NotFound.
	OpDelete Op = "delete"
	// OpUpdate applies Resources to a live container's cgroup.
	OpUpdate Op = "update"
	// OpReopenLog makes the monitor continue the container's log in a new
	// file at its log path (after kubelet renamed the old one).
	OpReopenLog Op = "reopen-log"
	// OpEvents streams an Event each time a container changes state.
	OpEvents Op = "events"
	// OpAttach connects to a container's stdio (see Attach in the
	// package documentation): the connection carries frames after the
	// answer.
	OpAttach Op = "attach"
	// OpShutdown ends the monitor. It refuses (FailedPrecondition) while it
	// holds a container that is not deleted.
	OpShutdown Op = "shutdown"
)

// Request is one call.
type Request struct {
	Op Op `json:"op"`
	// ID is the container the call is about (all but hello, list, events,
	// shutdown).
	ID        string                `json:"id,omitempty"`
	Create    *CreateRequest        `json:"create,omitempty"`
	Signal    int                   `json:"signal,omitempty"`
	All       bool                  `json:"all,omitempty"`
	Resources *specs.LinuxResources `json:"resources,omitempty"`
	Attach    *AttachRequest        `json:"attach,omitempty"`
}

// AttachRequest says which of a container's streams an attach wants.
type AttachRequest struct {
	Stdin  bool `json:"stdin,omitempty"`
	Stdout bool `json:"stdout,omitempty"`
	Stderr bool `json:"stderr,omitempty"`
}

// CreateRequest describes a container to create.
type CreateRequest struct {
	// Bundle is the container's directory: config.json is its OCI spec,
	// whose root.path is an already mounted rootfs. The monitor writes the
	// exit status there (ExitFile) before it reports the exit.
	Bundle string `json:"bundle"`
	// LogPath is the absolute path of the container's CRI-format log file;
	// empty means the output is discarded (without TTY an attach then
	// gets none either).
	LogPath string `json:"log_path,omitempty"`
	// Stdin keeps a pipe to the process's stdin open (for attach);
	// otherwise stdin is /dev/null. StdinOnce closes it after the first
	// attach that asked for stdin ends (not a terminal: see Attach).
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdin_once,omitempty"`
	// TTY gives the process a pseudo-terminal as stdin/stdout/stderr; its
	// output is logged as stdout.
	TTY bool `json:"tty,omitempty"`
	// SystemdCgroup says the spec's cgroupsPath is "slice:prefix:name".
	SystemdCgroup bool `json:"systemd_cgroup,omitempty"`
}

// ExitFile is the file in a container's bundle that holds its Exit (JSON),
// written atomically by the monitor before the exit is reported.
const ExitFile = "exit.json"

// Status is a container's lifecycle state as the monitor sees it.
type Status string

// Container states.
const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusStopped Status = "stopped"
)

// State is what a monitor knows of one container.
type State struct {
	ID        string    `json:"id"`
	Status    Status    `json:"status"`
	Pid       int       `json:"pid,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Exit is set once Status is stopped and the output is fully logged.
	Exit *Exit `json:"exit,omitempty"`
}

// Exit is how a container's init process ended.
type Exit struct {
	// Code is the exit status, or 128+signal when a signal ended it.
	Code int `json:"code"`
	// Signal is the signal that ended the process, 0 if it exited.
	Signal     int       `json:"signal,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
	// OOMKilled: the kernel's OOM killer killed a process of the
	// container's cgroup (its oom_kill count rose while it ran).
	OOMKilled bool `json:"oom_killed,omitempty"`
	// Message says what went wrong when the monitor itself ended the
	// container, e.g. it could not be started.
	Message string `json:"message,omitempty"`
}

// Hello identifies a monitor.
type Hello struct {
	Version int `json:"version"`
	Pid     int `json:"pid"`
}

// Code classifies an error answer so the daemon can map it to a gRPC code.
type Code string

// Error classes.
const (
	CodeNotFound           Code = "not-found"
	CodeAlreadyExists      Code = "already-exists"
	CodeInvalidArgument    Code = "invalid-argument"
	CodeFailedPrecondition Code = "failed-precondition"
	CodeInternal           Code = "internal"
)

// Response answers a Request.
type Response struct {
	// Error is empty on success.
	Error  string  `json:"error,omitempty"`
	Code   Code    `json:"code,omitempty"`
	Hello  *Hello  `json:"hello,omitempty"`
	State  *State  `json:"state,omitempty"`
	States []State `json:"states,omitempty"`
}

// EventType says what happened to a container.
type EventType string

// Events a monitor reports.
const (
	EventStarted EventType = "started"
	// EventExited is sent once the exit is durable and the output logged.
	EventExited EventType = "exited"
)

// Event is one state change, with the container's state after it.
type Event struct {
	Type  EventType `json:"type"`
	State State     `json:"state"`
}
