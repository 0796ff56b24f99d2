package ocispec

import (
	"path"
	"strconv"
	"strings"

	"github.com/moby/sys/signal"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// defaultPath is containerd's PATH for a Linux container (pkg/oci
// defaultUnixEnv); the image's PATH replaces it.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// process fills the command, environment and working directory, and
// checks the stop signal.
func (g *Generator) process(in Input, p *specs.Process, res *Result) error {
	var err error
	if p.Args, err = processArgs(in.Container, in.Image); err != nil {
		return err
	}
	if p.Cwd, err = workingDir(in.Container, in.Image); err != nil {
		return err
	}
	hostname := in.Pod.Hostname
	if hostname == "" {
		// containerd: the node's hostname for a pod without one.
		if hostname, err = g.host.hostname(); err != nil {
			return preconditionf("the pod has no hostname and the node's cannot be read: %v", err)
		}
	}
	if p.Env, err = environment(hostname, in.Container.TTY, in.Image.Env, in.Container.Env); err != nil {
		return err
	}
	res.StopSignal, err = stopSignal(in.Image.StopSignal)
	return err
}

// processArgs is containerd's WithProcessArgs (after Docker's rules): the
// container's command replaces the image's entrypoint and its args replace
// the image's cmd; args alone run after the image's entrypoint.
func processArgs(c Container, img imagespec.ImageConfig) ([]string, error) {
	command, args := c.Command, c.Args
	if len(command) == 0 {
		if len(args) == 0 {
			args = img.Cmd
		}
		// ENTRYPOINT [""] is Docker's way of saying "no entrypoint".
		if len(img.Entrypoint) != 1 || img.Entrypoint[0] != "" {
			command = img.Entrypoint
		}
	}
	out := make([]string, 0, len(command)+len(args))
	out = append(append(out, command...), args...)
	if len(out) == 0 {
		return nil, invalidf("no command to run: the container config has no command or args and image has no entrypoint or cmd")
	}
	for i, a := range out {
		if strings.ContainsRune(a, 0) {
			return nil, invalidf("argument %d of the command (%q) contains a NUL byte", i, a)
		}
	}
	return out, nil
}

// workingDir is the container's, else the image's, else "/". runc needs it
// absolute.
func workingDir(c Container, img imagespec.ImageConfig) (string, error) {
	switch {
	case c.WorkingDir != "":
		if !path.IsAbs(c.WorkingDir) || strings.ContainsRune(c.WorkingDir, 0) {
			return "", invalidf("working_dir %q must be an absolute path", c.WorkingDir)
		}
		return c.WorkingDir, nil
	case img.WorkingDir != "":
		if !path.IsAbs(img.WorkingDir) {
			return "", invalidf("the image's WorkingDir %q is not an absolute path; set working_dir in the container config", img.WorkingDir)
		}
		return img.WorkingDir, nil
	}
	return "/", nil
}

// environment is containerd's order: its default PATH, TERM=xterm for a
// TTY, HOSTNAME, the image's variables, the container's. A later value of a
// name replaces the earlier one where it stood (containerd appends and
// runc then keeps the last; the process sees the same). An image entry
// without "=" unsets the name, as in containerd.
func environment(hostname string, tty bool, imageEnv []string, ctrEnv []KeyValue) ([]string, error) {
	e := envList{index: map[string]int{}}
	e.set(defaultPath)
	if tty {
		e.set("TERM=xterm")
	}
	e.set("HOSTNAME=" + hostname)
	for _, kv := range imageEnv {
		e.set(kv)
	}
	for _, kv := range ctrEnv {
		if kv.Key == "" {
			return nil, invalidf("an environment variable has an empty name (value %q)", kv.Value)
		}
		if strings.ContainsRune(kv.Key, 0) || strings.ContainsRune(kv.Value, 0) {
			return nil, invalidf("environment variable %q contains a NUL byte", kv.Key)
		}
		if strings.Contains(kv.Key, "=") {
			return nil, invalidf("environment variable name %q contains \"=\"", kv.Key)
		}
		e.set(kv.Key + "=" + kv.Value)
	}
	return e.list(), nil
}

type envList struct {
	vals  []string
	index map[string]int
}

func (e *envList) set(kv string) {
	k, _, ok := strings.Cut(kv, "=")
	if k == "" {
		return
	}
	i, exists := e.index[k]
	switch {
	case !ok && exists:
		e.vals[i] = ""
		delete(e.index, k)
	case !ok:
	case exists:
		e.vals[i] = kv
	default:
		e.index[k] = len(e.vals)
		e.vals = append(e.vals, kv)
	}
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.vals))
	for _, v := range e.vals {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// stopSignal checks the image's STOPSIGNAL ("SIGTERM", "TERM", "15",
// "SIGRTMIN+3") and writes it "SIG<NAME>"; "SIGTERM" when there is none.
// containerd keeps it as written and parses it only when stopping; a bad
// one is refused here instead, when it can still be reported.
func stopSignal(raw string) (string, error) {
	if raw == "" {
		return "SIGTERM", nil
	}
	sig, err := signal.ParseSignal(raw)
	if err != nil || !signal.ValidSignalForPlatform(sig) {
		return "", invalidf("the image's STOPSIGNAL %q is not a signal", raw)
	}
	if _, err := strconv.Atoi(raw); err == nil {
		if name := unix.SignalName(sig); name != "" {
			return name, nil
		}
		return raw, nil
	}
	return "SIG" + strings.TrimPrefix(strings.ToUpper(raw), "SIG"), nil
}
