package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
)

// Options configure the sandbox manager.
type Options struct {
	// Root keeps sandbox records (<root>/sandboxes); State their runtime
	// directories (<state>/sandboxes/<id>).
	Root, State  string
	CgroupDriver string
	// Handlers are the runtime handler names accepted besides "".
	Handlers []string
	// ShmSize is the size of each pod's /dev/shm tmpfs in bytes.
	ShmSize  int64
	Network  *network.Manager
	PodCIDRs *network.PodCIDRs
	Log      *slog.Logger

	// Rootfs makes containers' writable layers (the image store).
	Rootfs Rootfs
	// Spec holds node-wide defaults for container specs.
	Spec ocispec.Defaults
	// MonitorBinary is the berth-monitor executable; MonitorArgs go
	// before its own arguments (tests run themselves as the monitor).
	MonitorBinary   string
	MonitorArgs     []string
	MonitorLogLevel string
	// MonitorHelper is the binary a monitor runs for its libcontainer work
	// (`<helper> container-op ...`): the daemon's own executable.
	MonitorHelper string
	// Observer, if set, is told about monitors and recovery (metrics).
	Observer Observer
}

// Manager runs pod sandboxes: namespaces pinned without an infra process,
// CNI networking, per-pod files and the pod cgroup.
type Manager struct {
	opts    Options
	log     *slog.Logger
	records recordStore[Sandbox, *Sandbox]

	mu        sync.RWMutex
	sandboxes map[string]*Sandbox
	// reserved maps kubelet's identity of a pod attempt to the sandbox
	// made (or being made) for it; see reserve.go.
	reserved map[string]*reservation
	// locks serialise lifecycle operations per sandbox.
	locks map[string]*sync.Mutex
	// stats keeps the previous CPU sample per sandbox for usage rates.
	stats statsCache

	ctrRecords recordStore[Container, *Container]
	// containers by ID; ctrNames maps kubelet's container name to its ID.
	containers map[string]*containerEntry
	ctrNames   map[string]string
	// watchers end the event streams of the pod monitors being followed.
	watchers map[string]context.CancelFunc
	specs    *ocispec.Generator
	events   eventBus
}

// NewManager loads the sandbox records and reconciles them with what
// survived (see recover.go).
func NewManager(ctx context.Context, opts Options) (*Manager, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ShmSize <= 0 {
		opts.ShmSize = 64 << 20
	}
	if opts.MonitorLogLevel == "" {
		opts.MonitorLogLevel = "info"
	}
	m := &Manager{
		opts:      opts,
		log:       opts.Log,
		records:   recordStore[Sandbox, *Sandbox]{dir: filepath.Join(opts.Root, "sandboxes")},
		sandboxes: map[string]*Sandbox{},
		reserved:  map[string]*reservation{},
		locks:     map[string]*sync.Mutex{},

		ctrRecords: recordStore[Container, *Container]{dir: filepath.Join(opts.Root, "containers")},
		containers: map[string]*containerEntry{},
		ctrNames:   map[string]string{},
		watchers:   map[string]context.CancelFunc{},
		specs:      ocispec.NewGenerator(opts.Spec),
	}
	for _, dir := range []string{"sandboxes", "containers"} {
		if err := os.MkdirAll(filepath.Join(opts.State, dir), 0o711); err != nil {
			return nil, fmt.Errorf("create %s state dir: %w", dir, err)
		}
	}
	m.recover(ctx)
	return m, nil
}

// lock returns the per-sandbox mutex, locked.
func (m *Manager) lock(id string) func() {
	m.mu.Lock()
	l, ok := m.locks[id]
	if !ok {
		l = &sync.Mutex{}
		m.locks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Run creates a pod sandbox. A kubelet retry of a request still running or
// already done gets the same sandbox; a conflicting request for the same
// pod attempt is AlreadyExists.
func (m *Manager) Run(ctx context.Context, cfg Config) (Sandbox, error) {
	if err := m.validate(cfg); err != nil {
		return Sandbox{}, err
	}
	res, first, err := m.reserve(cfg)
	if err != nil {
		return Sandbox{}, err
	}
	if !first {
		return m.awaitReservation(ctx, res)
	}
	sb, err := m.create(ctx, cfg)
	m.finishReservation(cfg.Metadata, res, sb, err)
	if err != nil {
		return Sandbox{}, err
	}
	m.publish(Event{Type: EventContainerCreated, SandboxID: sb.ID, Sandbox: true, At: sb.CreatedAt})
	m.publish(Event{Type: EventContainerStarted, SandboxID: sb.ID, Sandbox: true, At: time.Now()})
	return sb.clone(), nil
}

func (m *Manager) validate(cfg Config) error {
	md := cfg.Metadata
	if md.Name == "" || md.Namespace == "" || md.UID == "" {
		return fmt.Errorf("%w: pod sandbox metadata needs name, namespace and uid (got %q, %q, %q)",
			errdefs.ErrInvalidArgument, md.Name, md.Namespace, md.UID)
	}
	// They become CNI_ARGS (K8S_POD_NAME=<name>;...): a ";" would add
	// arguments of its own, an "=" make every plugin refuse them.
	if strings.ContainsAny(md.Name+md.Namespace+md.UID, ";=\x00") {
		return fmt.Errorf("%w: pod sandbox metadata %q, %q, %q must not contain \";\", \"=\" or NUL",
			errdefs.ErrInvalidArgument, md.Name, md.Namespace, md.UID)
	}
	if h := cfg.RuntimeHandler; h != "" && !slices.Contains(m.opts.Handlers, h) {
		return fmt.Errorf("%w: unknown runtime handler %q: this node has %q (see runtime.handlers in the berth config)",
			errdefs.ErrInvalidArgument, h, m.opts.Handlers)
	}
	if _, _, err := SplitSysctls(cfg.Sysctls, cfg.HostNetwork, cfg.HostIPC); err != nil {
		return err
	}
	// Checked here as well as where they are used, so that bad input is
	// refused before anything is recorded or created.
	if cfg.Hostname != "" {
		if err := validateHostname(cfg.Hostname); err != nil {
			return err
		}
	}
	if cfg.DNS != nil {
		if err := validateDNS(cfg.DNS); err != nil {
			return err
		}
	}
	if err := validateLogDirectory(cfg.LogDirectory); err != nil {
		return err
	}
	if cfg.CgroupParent != "" {
		if _, err := podCgroupPath(m.opts.CgroupDriver, cfg.CgroupParent, "validate"); err != nil {
			return err
		}
	}
	if res := cfg.Resources.WithOverhead(cfg.Overhead); res != nil {
		return res.Validate()
	}
	return nil
}

// validateLogDirectory checks the pod's log directory (kubelet's
// /var/log/pods/<namespace>_<name>_<uid>), to which the containers' log
// paths are joined: absolute, without ".." or NUL.
func validateLogDirectory(dir string) error {
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) || slices.Contains(strings.Split(dir, "/"), "..") || strings.ContainsRune(dir, 0) {
		return fmt.Errorf("%w: log directory %q must be an absolute path without \"..\"", errdefs.ErrInvalidArgument, dir)
	}
	return nil
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// create makes every resource of a new sandbox, recording the sandbox as
// creating first so that a crash in between is rolled back at restart. On
// failure it undoes what it made.
func (m *Manager) create(ctx context.Context, cfg Config) (_ *Sandbox, retErr error) {
	sb := &Sandbox{
		ID:         newID(),
		Config:     cfg,
		CreatedAt:  time.Now(),
		State:      StateCreating,
		ConfigHash: cfg.hash(),
	}
	sb.Dir = filepath.Join(m.opts.State, "sandboxes", sb.ID)
	log := m.log.With("pod_id", sb.ID, "pod", cfg.Metadata.Namespace+"/"+cfg.Metadata.Name)
	if err := m.records.save(sb); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if err := m.teardown(context.WithoutCancel(ctx), sb); err != nil {
				log.ErrorContext(ctx, "could not undo a failed RunPodSandbox; it is retried at the next start", "error", err)
				return
			}
			_ = m.records.delete(sb.ID)
		}
	}()
	if err := os.MkdirAll(sb.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("create sandbox dir: %w", err)
	}
	netSysctls, ipcSysctls, _ := SplitSysctls(cfg.Sysctls, cfg.HostNetwork, cfg.HostIPC)

	cg, err := EnsurePodCgroup(ctx, m.opts.CgroupDriver, cfg.CgroupParent, sb.ID, cfg.Resources.WithOverhead(cfg.Overhead))
	if err != nil {
		return nil, err
	}
	sb.Cgroup = cg.State()
	// The monitor comes up while the namespaces and the network are made.
	// Until it is recorded, a crash leaves it to the rollback, which finds
	// it by its --dir (adoptUnrecorded).
	awaitMonitor := m.startMonitorAsync(ctx, sb)
	err = m.createNamespaces(ctx, sb, cg, netSysctls, ipcSysctls)
	mon, monErr := awaitMonitor()
	if mon != nil {
		sb.Monitor = mon // for the rollback, if there is one
	}
	if err == nil {
		err = monErr
	}
	if err != nil {
		return nil, err
	}
	if err := m.finishCreate(ctx, sb, log); err != nil {
		return nil, err
	}
	if mon != nil {
		m.monitorStarted(sb.ID, mon)
	}
	return sb, nil
}

// createNamespaces makes the pod's namespaces (and its PID namespace
// holder) and network.
func (m *Manager) createNamespaces(ctx context.Context, sb *Sandbox, cg *PodCgroup, netSysctls, ipcSysctls map[string]string) error {
	cfg := sb.Config
	if cfg.UserNS != nil {
		if err := m.createUserNamespaces(ctx, sb, cg, ipcSysctls); err != nil {
			return err
		}
		return m.setupNetwork(ctx, sb, netSysctls, false)
	}
	if cfg.SharedPID && !cfg.HostPID {
		bin := append([]string{m.opts.MonitorBinary}, m.opts.MonitorArgs...)
		holder, err := startHolder(ctx, bin, sb.Dir, cg)
		if err != nil {
			return err
		}
		sb.PIDHolder = holder
	}
	// Saved at once: a crash from here on must find the cgroup and the
	// holder to remove them (the pins and files are found from sb.Dir).
	if err := m.records.save(sb); err != nil {
		return err
	}
	pinned, err := CreatePinnedNamespaces(sb.Dir, NamespaceOptions{
		IPC: !cfg.HostIPC, UTS: !cfg.HostNetwork, Hostname: cfg.Hostname, IPCSysctls: ipcSysctls,
	})
	if err != nil {
		return err
	}
	sb.Namespaces = pinned
	if !cfg.HostNetwork {
		return m.setupNetwork(ctx, sb, netSysctls, true)
	}
	return nil
}

// finishCreate writes the pod's files and records the sandbox ready.
func (m *Manager) finishCreate(ctx context.Context, sb *Sandbox, log *slog.Logger) error {
	cfg := sb.Config
	files, err := WritePodFiles(sb.Dir, PodFilesOptions{
		Hostname: cfg.Hostname, DNS: cfg.DNS, IPs: sb.IPs, HostNetwork: cfg.HostNetwork,
		HostIPC: cfg.HostIPC, ShmSize: m.opts.ShmSize,
	})
	if err != nil {
		return err
	}
	sb.Files = files
	sb.State = StateReady
	if err := m.records.save(sb); err != nil {
		return err
	}
	m.mu.Lock()
	m.sandboxes[sb.ID] = sb
	m.mu.Unlock()
	log.InfoContext(ctx, "pod sandbox ready", "ips", sb.IPs, "host_network", cfg.HostNetwork)
	return nil
}

// setupNetwork pins a network namespace (unless pin is false: a pod in a
// user namespace has one pinned already), brings up loopback, applies the
// net.* sysctls and runs CNI ADD, recording the pod's IPs.
func (m *Manager) setupNetwork(ctx context.Context, sb *Sandbox, sysctls map[string]string, pin bool) error {
	if pin {
		path := filepath.Join(sb.Dir, "netns")
		if err := network.CreateNetNS(path); err != nil {
			return err
		}
		sb.NetNS = path
		// Saved now: if berth dies during CNI ADD, the restart must know
		// the netns (and so run CNI DEL for it) to release any IP it got.
		if err := m.records.save(sb); err != nil {
			return err
		}
	}
	if err := network.BringUpLoopback(sb.NetNS); err != nil {
		return err
	}
	if err := network.ApplySysctls(sb.NetNS, sysctls); err != nil {
		return err
	}
	res, err := m.opts.Network.Setup(ctx, m.attachment(sb))
	if err != nil {
		return err
	}
	for _, ip := range res.IPs {
		sb.IPs = append(sb.IPs, ip.String())
	}
	return nil
}

func (m *Manager) attachment(sb *Sandbox) network.Attachment {
	cfg := sb.Config
	a := network.Attachment{
		PodID: sb.ID, PodName: cfg.Metadata.Name, PodNamespace: cfg.Metadata.Namespace, PodUID: cfg.Metadata.UID,
		NetNSPath:        sb.NetNS,
		PortMappings:     cfg.PortMappings,
		IngressBandwidth: cfg.Annotations["kubernetes.io/ingress-bandwidth"],
		EgressBandwidth:  cfg.Annotations["kubernetes.io/egress-bandwidth"],
	}
	if m.opts.PodCIDRs != nil {
		a.PodCIDRs = m.opts.PodCIDRs.Get()
	}
	if d := cfg.DNS; d != nil {
		a.DNS = &network.DNS{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	return a
}

// Stop tears the pod network down (CNI DEL always runs, so no IP leaks) and
// marks the sandbox not ready. A missing or stopped sandbox is success.
func (m *Manager) Stop(ctx context.Context, id string) error {
	sb, unlock, err := m.lockExisting(id)
	if sb == nil {
		return err
	}
	defer unlock()
	// Stopping a pod ends its containers at once, as containerd does
	// (kubelet has stopped them gracefully before).
	if err := m.stopContainers(ctx, sb.ID); err != nil {
		return err
	}
	// With a shared PID namespace, ending the holder (its PID 1) ends
	// whatever else is left in it.
	if err := stopHolder(ctx, sb.PIDHolder); err != nil {
		return err
	}
	if err := m.stopNetwork(ctx, sb); err != nil {
		return err
	}
	if sb.State != StateNotReady {
		m.mu.Lock()
		sb.State = StateNotReady
		m.mu.Unlock()
		if err := m.records.save(sb); err != nil {
			return err
		}
		m.log.InfoContext(ctx, "pod sandbox stopped", "pod_id", sb.ID)
		m.publish(Event{Type: EventContainerStopped, SandboxID: sb.ID, Sandbox: true, At: time.Now()})
	}
	return nil
}

// Remove stops the sandbox if needed and removes everything it owns. A
// missing sandbox is success.
func (m *Manager) Remove(ctx context.Context, id string) error {
	sb, unlock, err := m.lockExisting(id)
	if sb == nil {
		return err
	}
	defer unlock()
	if err := m.removeContainers(ctx, sb.ID); err != nil {
		return err
	}
	if err := m.stopMonitor(ctx, sb); err != nil {
		return err
	}
	if err := m.teardown(ctx, sb); err != nil {
		return err
	}
	if err := m.records.delete(sb.ID); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.sandboxes, sb.ID)
	delete(m.reserved, sb.Config.Metadata.reservationKey())
	delete(m.locks, sb.ID)
	m.mu.Unlock()
	m.log.InfoContext(ctx, "pod sandbox removed", "pod_id", sb.ID)
	m.publish(Event{Type: EventContainerDeleted, SandboxID: sb.ID, Sandbox: true, At: time.Now()})
	return nil
}

// lockExisting finds and locks a sandbox for Stop and Remove, to which a
// sandbox that does not exist is already done: then it returns a nil
// sandbox and a nil error.
func (m *Manager) lockExisting(id string) (*Sandbox, func(), error) {
	sb, err := m.lookup(id)
	if errdefs.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return sb, m.lock(sb.ID), nil
}

// lockSandbox finds and locks a sandbox that must exist.
func (m *Manager) lockSandbox(id string) (*Sandbox, func(), error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	unlock := m.lock(sb.ID)
	m.mu.RLock()
	_, still := m.sandboxes[sb.ID]
	m.mu.RUnlock()
	if !still {
		unlock()
		return nil, nil, fmt.Errorf("%w: pod sandbox %q was removed", errdefs.ErrNotFound, id)
	}
	return sb, unlock, nil
}

// lookup finds a sandbox by full ID or unique ID prefix.
func (m *Manager) lookup(idOrPrefix string) (*Sandbox, error) {
	if idOrPrefix == "" {
		return nil, fmt.Errorf("%w: pod sandbox ID is empty", errdefs.ErrInvalidArgument)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if sb, ok := m.sandboxes[idOrPrefix]; ok {
		return sb, nil
	}
	var found *Sandbox
	for id, sb := range m.sandboxes {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != nil {
				return nil, fmt.Errorf("%w: pod sandbox ID prefix %q is ambiguous", errdefs.ErrInvalidArgument, idOrPrefix)
			}
			found = sb
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: pod sandbox %q does not exist", errdefs.ErrNotFound, idOrPrefix)
	}
	return found, nil
}

// Get returns a sandbox by ID or unique ID prefix.
func (m *Manager) Get(idOrPrefix string) (Sandbox, error) {
	sb, err := m.lookup(idOrPrefix)
	if err != nil {
		return Sandbox{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return sb.clone(), nil
}
