package containerops

// Turning the OCI spec into libcontainer's configuration and init process,
// the way `runc create` does (runc's utils_linux.go createContainer and
// newProcess, spec.go, rlimit_linux.go).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxSpecSize bounds config.json: a spec is a few KiB.
const maxSpecSize = 4 << 20

// loadSpec reads and checks <bundle>/config.json.
func loadSpec(bundle string) (*specs.Spec, error) {
	if !filepath.IsAbs(bundle) {
		return nil, fmt.Errorf("bundle %q is not an absolute path", bundle)
	}
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spec specs.Spec
	dec := json.NewDecoder(&limitedReader{r: f, n: maxSpecSize})
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", f.Name(), err)
	}
	if err := validateSpec(&spec); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return &spec, nil
}

// validateSpec checks what runc checks before it converts a spec
// (validateProcessSpec), plus what the monitor relies on: it runs no
// container from a relative rootfs, since its working directory is not the
// bundle.
func validateSpec(spec *specs.Spec) error {
	switch {
	case spec.Root == nil || spec.Root.Path == "":
		return errors.New("root.path must be set")
	case !filepath.IsAbs(spec.Root.Path):
		return fmt.Errorf("root.path %q must be absolute", spec.Root.Path)
	case spec.Linux == nil:
		return errors.New("linux section must be set")
	case spec.Process == nil:
		return errors.New("process must be set")
	case spec.Process.Cwd == "" || !filepath.IsAbs(spec.Process.Cwd):
		return fmt.Errorf("process.cwd %q must be an absolute path", spec.Process.Cwd)
	case len(spec.Process.Args) == 0:
		return errors.New("process.args must not be empty")
	}
	return nil
}

// libcontainerConfig converts spec for container id with runc's own
// converter and validator, so that a bad spec is refused before anything
// is created.
func libcontainerConfig(id, bundle string, spec *specs.Spec, systemdCgroup bool) (*configs.Config, error) {
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       id,
		UseSystemdCgroup: systemdCgroup,
		Spec:             spec,
	})
	if err != nil {
		return nil, err
	}
	// specconv records its working directory as the bundle (runc runs in
	// the bundle); hooks and `runc state` should see the real one.
	for i, l := range cfg.Labels {
		if strings.HasPrefix(l, "bundle=") {
			cfg.Labels[i] = "bundle=" + bundle
		}
	}
	if err := validate.Validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// newProcess converts spec.Process to the container's init process, as
// runc's newProcess does. Settings that specconv also put in the container
// config (capabilities, rlimits, ...) are repeated here because process
// settings take precedence, exactly as in runc.
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
		Init:            true,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Inheritable: c.Inheritable,
			Permitted:   c.Permitted,
			Ambient:     c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, rl := range p.Rlimits {
		t, ok := rlimitTypes[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, err
	}
	lp.CPUAffinity = aff
	return lp, nil
}

// rlimitTypes is runc's rlimitMap.
var rlimitTypes = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}

// limitedReader fails (rather than truncating) past n bytes.
type limitedReader struct {
	r     io.Reader
	n     int64
	limit int64 // n as given, for the error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.limit == 0 {
		l.limit = l.n
	}
	if l.n <= 0 {
		return 0, fmt.Errorf("larger than %d bytes", l.limit)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}
