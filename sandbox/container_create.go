package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-runtime/berth/internal/atomicfile"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// CreateContainer creates a container in a ready pod sandbox: its writable
// rootfs on the image, its OCI spec, and its created process under the
// pod's monitor. The name is reserved per pod attempt, as kubelet expects;
// on any failure nothing is left behind.
func (m *Manager) CreateContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (Container, error) {
	if cfg.Metadata.Name == "" {
		return Container{}, fmt.Errorf("%w: container metadata needs a name", errdefs.ErrInvalidArgument)
	}
	logPath, err := cleanLogPath(cfg.LogPath)
	if err != nil {
		return Container{}, err
	}
	cfg.LogPath = logPath
	sb, unlock, err := m.lockSandbox(sandboxID)
	if err != nil {
		return Container{}, err
	}
	defer unlock()
	if sb.State != StateReady {
		return Container{}, fmt.Errorf("%w: pod sandbox %s is not ready: create its containers in a running pod",
			errdefs.ErrFailedPrecondition, sb.ID)
	}
	c := &Container{
		ID: newID(), SandboxID: sb.ID, Config: cfg, State: ContainerCreating, CreatedAt: time.Now(),
	}
	c.Dir = filepath.Join(m.opts.State, "containers", c.ID)
	if c.LogPath, err = containerLogPath(sb.Config.LogDirectory, cfg.LogPath); err != nil {
		return Container{}, err
	}
	key := nameKey(sb, cfg.Metadata)
	e, err := m.reserveName(key, c)
	if err != nil {
		return Container{}, err
	}
	log := m.log.With("pod_id", sb.ID, "container_id", c.ID, "container", cfg.Metadata.Name)
	if err := m.createContainer(ctx, sb, e, log); err != nil {
		if cerr := m.cleanupContainer(context.WithoutCancel(ctx), sb, c); cerr != nil {
			log.ErrorContext(ctx, "could not undo a failed CreateContainer; it is retried at the next start", "error", cerr)
		} else {
			_ = m.ctrRecords.delete(c.ID)
		}
		m.mu.Lock()
		delete(m.containers, c.ID)
		delete(m.ctrNames, key)
		m.mu.Unlock()
		return Container{}, err
	}
	m.mu.RLock()
	out := c.clone() // the monitor's events may change c from now on
	m.mu.RUnlock()
	log.InfoContext(ctx, "container created", "pid", out.Pid, "image", cfg.Image.Requested)
	m.publish(Event{Type: EventContainerCreated, ContainerID: c.ID, SandboxID: sb.ID, At: c.CreatedAt})
	return out, nil
}

// cleanLogPath checks a log path relative to the pod's log directory.
func cleanLogPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if !filepath.IsLocal(p) || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: log path %q must be relative to the pod's log directory, without \"..\"", errdefs.ErrInvalidArgument, p)
	}
	return filepath.Clean(p), nil
}

// containerLogPath is the absolute path of a container's log: its clean
// log path in the pod's log directory ("" if either is unset). A symlink
// on the way (the log file included) is refused, so that the log cannot be
// written outside the directory through one.
func containerLogPath(dir, rel string) (string, error) {
	if dir == "" || rel == "" {
		return "", nil
	}
	p := filepath.Join(dir, rel)
	if len(p) >= unix.PathMax {
		return "", fmt.Errorf("%w: log path %q in the pod's log directory is longer than the %d bytes of a path", errdefs.ErrInvalidArgument, rel, unix.PathMax-1)
	}
	if resolved, err := securejoin.SecureJoin(dir, rel); err != nil || resolved != p {
		return "", fmt.Errorf("%w: log path %q leads through a symlink in the pod's log directory %q", errdefs.ErrInvalidArgument, rel, dir)
	}
	return p, nil
}

// reserveName records c under kubelet's name for it, or says which
// container holds that name.
func (m *Manager) reserveName(key string, c *Container) (*containerEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if other, ok := m.ctrNames[key]; ok {
		return nil, fmt.Errorf("%w: container name %q is already in use by container %s: remove it first or use another attempt number",
			errdefs.ErrAlreadyExists, key, other)
	}
	e := newContainerEntry(c, key)
	m.ctrNames[key] = c.ID
	m.containers[c.ID] = e
	return e, nil
}

// createContainer makes the container's resources, recording it as
// creating first so that a crash in between is rolled back at restart.
func (m *Manager) createContainer(ctx context.Context, sb *Sandbox, e *containerEntry, log *slog.Logger) error {
	c := e.rec
	if err := m.saveContainer(e); err != nil {
		return err
	}
	// 0711: the root of a container in a user namespace is an unprivileged
	// host user that must reach its rootfs (the mount hides the mode of
	// the rootfs directory itself).
	if err := os.MkdirAll(filepath.Join(c.Dir, "rootfs"), 0o711); err != nil {
		return fmt.Errorf("container dir: %w", err)
	}
	if c.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
			return fmt.Errorf("container log directory: %w", err)
		}
	}
	start := time.Now()
	var uidMap, gidMap string
	if u := sb.Config.UserNS; u != nil {
		uidMap, gidMap = idMapLabel(u.UIDs), idMapLabel(u.GIDs)
	}
	mounts, err := m.opts.Rootfs.PrepareRootfs(ctx, c.ID, imageRef(c.Config.Image), uidMap, gidMap)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(c.Dir, "rootfs")
	if err := mount.All(mounts, rootfs); err != nil {
		return fmt.Errorf("mount the rootfs of container %s: %w", c.ID, err)
	}
	rootfsDone := time.Now()
	ctrMounts, err := m.mountImageVolumes(ctx, c)
	if err != nil {
		return err
	}
	volumes, err := m.makeVolumes(c, rootfs, ctrMounts, sb.Config.UserNS)
	if err != nil {
		return err
	}
	if c.Config.TargetID != "" {
		ns, err := m.targetPIDNamespace(c.Config.TargetID)
		if err != nil {
			return err
		}
		c.Config.Spec.Security.TargetPIDNS = ns
	}
	in := m.specInput(sb, c, rootfs)
	in.Container.Mounts, in.Volumes = ctrMounts, volumes
	res, err := m.specs.Generate(in)
	if err != nil {
		return err
	}
	m.mu.Lock()
	c.Resources = res.Spec.Linux.Resources
	c.UID, c.GID, c.AdditionalGIDs, c.Username = res.UID, res.GID, res.AdditionalGIDs, res.Username
	c.StopSignal = res.StopSignal
	if c.Config.StopSignalArg != "" {
		c.StopSignal = c.Config.StopSignalArg
	}
	c.Mounts, c.Volumes = ctrMounts, volumes
	m.mu.Unlock()
	b, err := json.Marshal(res.Spec)
	if err != nil {
		return fmt.Errorf("encode the spec of container %s: %w", c.ID, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(c.Dir, "config.json"), b, 0o600); err != nil {
		return err
	}
	specDone := time.Now()
	client, err := m.ensureMonitor(ctx, sb)
	if err != nil {
		return err
	}
	monitorReady := time.Now()
	spec := c.Config.Spec
	st, err := client.Create(ctx, c.ID, monitorapi.CreateRequest{
		Bundle: c.Dir, LogPath: c.LogPath, Stdin: spec.Stdin, StdinOnce: spec.StdinOnce, TTY: spec.TTY,
		SystemdCgroup: m.opts.CgroupDriver == DriverSystemd,
	})
	if err != nil {
		return fmt.Errorf("create container %s: %w", c.ID, err)
	}
	m.mu.Lock()
	c.State = ContainerCreated
	c.Pid = st.Pid
	m.mu.Unlock()
	// Where the time went: the rootfs snapshot and its mount, the spec,
	// the monitor (started with the pod, so normally ready), the create.
	log.DebugContext(ctx, "container process created", "duration", time.Since(start),
		"rootfs", rootfsDone.Sub(start), "spec", specDone.Sub(rootfsDone),
		"monitor", monitorReady.Sub(specDone), "create", time.Since(monitorReady))
	return m.saveContainer(e)
}

// targetPIDNamespace is the PID namespace of a running target container,
// for pid: TARGET (ephemeral debug containers).
func (m *Manager) targetPIDNamespace(id string) (string, error) {
	t, err := m.GetContainer(id)
	if err != nil {
		return "", fmt.Errorf("target container of pid namespace: %w", err)
	}
	if t.State != ContainerRunning || t.Pid <= 0 {
		return "", fmt.Errorf("%w: target container %s is %s: its PID namespace can only be joined while it runs",
			errdefs.ErrFailedPrecondition, t.ID, t.State)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", t.Pid), nil
}

// imageRef is how the image store finds the container's image: by ID, so
// a tag moved since does not change what the container runs.
func imageRef(img ImageInfo) string {
	if img.ID != "" {
		return img.ID
	}
	return img.Requested
}

// specInput assembles what ocispec needs from the pod and the container,
// and chooses the container's cgroup.
func (m *Manager) specInput(sb *Sandbox, c *Container, rootfs string) ocispec.Input {
	cfg := sb.Config
	pod := ocispec.Pod{
		ID: sb.ID, Hostname: cfg.Hostname,
		HostnameFile: sb.Files.Hostname, ResolvConf: sb.Files.ResolvConf, Hosts: sb.Files.Hosts, Shm: sb.Files.Shm,
		NetNS: sb.NetNS, IPCNS: sb.Namespaces.IPC, UTSNS: sb.Namespaces.UTS,
		HostNetwork: cfg.HostNetwork, HostIPC: cfg.HostIPC, HostPID: cfg.HostPID,
		SupplementalGroupsPolicy: cfg.SupplementalGroupsPolicy,
	}
	if sb.PIDHolder != nil {
		pod.PIDNS = sb.PIDHolder.Pin
	}
	if cfg.UserNS != nil {
		pod.UserNS, pod.UserNSMappings = sb.Namespaces.User, cfg.UserNS
	}
	if p := c.Config.SupplementalGroupsPolicy; p != "" {
		pod.SupplementalGroupsPolicy = p
	}
	cgPath, cgState := containerCgroup(sb.Cgroup, c.ID)
	c.CgroupsPath, c.Cgroup = cgPath, cgState
	return ocispec.Input{
		ID: c.ID, Rootfs: rootfs, Container: c.Config.Spec, Image: c.Config.Image.Config,
		ImageName: c.Config.Image.Requested, Pod: pod, CgroupsPath: cgPath,
	}
}

// containerCgroup places a container below its pod's cgroup: for cgroupfs
// at <pod>/<id> as containerd does, for systemd as the scope
// "<pod slice>:berth:<id>" (systemd's path <pod>/berth-<id>.scope).
func containerCgroup(pod CgroupState, id string) (string, CgroupState) {
	if pod.Driver == DriverSystemd {
		return path.Base(pod.Path) + ":berth:" + id,
			CgroupState{Driver: pod.Driver, Path: path.Join(pod.Path, "berth-"+id+".scope")}
	}
	p := path.Join(pod.Path, id)
	return p, CgroupState{Driver: DriverCgroupfs, Path: p}
}

// cleanupContainer removes whatever a container has: its process in the
// monitor, its rootfs and image-volume mounts and snapshots, its bundle and
// the directories of its image's VOLUMEs. Each step tolerates what is
// already gone, so it can be repeated (also after a crash); what it finds
// follows from the container's ID and bundle, not from how far the record
// got.
func (m *Manager) cleanupContainer(ctx context.Context, sb *Sandbox, c *Container) error {
	var errs []error
	if sb != nil {
		if client := m.monitorClient(sb); client != nil {
			if err := client.Delete(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
				errs = append(errs, err)
			}
		}
	}
	// Normally gone with the monitor's delete; not if the monitor is.
	if err := removeContainerCgroup(ctx, c.Cgroup); err != nil {
		errs = append(errs, err)
	}
	volumesMounted := false
	if c.Dir != "" {
		rootfs := filepath.Join(c.Dir, "rootfs")
		if err := mount.UnmountAll(rootfs, unix.MNT_DETACH); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unmount the rootfs of container %s: %w", c.ID, err))
		}
		if err := unmountImageVolumes(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.ID, err))
			volumesMounted = true
		}
	}
	if err := m.opts.Rootfs.RemoveRootfs(ctx, c.ID); err != nil {
		errs = append(errs, err)
	}
	// Their layers must stay while a view of them may still be mounted.
	if !volumesMounted {
		if err := m.opts.Rootfs.RemoveImageVolumes(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if c.Dir != "" {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("remove container dir: %w", err))
			}
		}
		if c.ID != "" {
			if err := os.RemoveAll(m.volumesDir(c.ID)); err != nil {
				errs = append(errs, fmt.Errorf("remove the volumes of container %s: %w", c.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}
