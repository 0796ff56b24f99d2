package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// lockedLog is the daemon's output, shared with the test.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// ownDaemon is berth started with nothing but --config: unlike the
// framework's daemons, no flag pins the log level or the registry config
// directory, so a reload may change them.
type ownDaemon struct {
	cmd    *exec.Cmd
	log    *lockedLog
	file   string
	images runtimeapi.ImageServiceClient
	rt     runtimeapi.RuntimeServiceClient
}

func startOwnDaemon(t *testing.T, configFor func(dir string) string) *ownDaemon {
	t.Helper()
	framework.RequireRoot(t)
	dir := t.TempDir()
	sock := filepath.Join(framework.ShortTempDir(t), "berth.sock")
	d := &ownDaemon{log: &lockedLog{}, file: filepath.Join(dir, "berth.toml")}
	base := fmt.Sprintf("listen = %q\nroot = %q\nstate = %q\n[cni]\nconf_dir = %q\nbin_dirs = [%q]\n",
		"unix://"+sock, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "net.d"), filepath.Join(dir, "cni-bin"))
	writeConfig(t, d.file, base+configFor(dir))
	d.cmd = exec.Command(framework.BerthBinary(t), "--config", d.file)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = d.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("--- berth log ---\n%s", d.log)
		}
	})
	conn, err := framework.Dial("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d.rt, d.images = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth did not serve: %v\n%s", err, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rewrite keeps the daemon's own dirs and replaces the rest of the file.
func (d *ownDaemon) rewrite(t *testing.T, rest string) {
	t.Helper()
	b, err := os.ReadFile(d.file)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(b), "# reloadable\n")
	writeConfig(t, d.file, head+"# reloadable\n"+rest)
}

func (d *ownDaemon) reload(t *testing.T) {
	t.Helper()
	n := strings.Count(d.log.String(), "config reload")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for strings.Count(d.log.String(), "config reload") == n {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", d.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SIGHUP changes the log level (debug lines appear, then go again) and the
// registry config directory (the next pull goes through the new mirror),
// without a restart.
func TestSIGHUPReloadsLogLevelAndRegistryDir(t *testing.T) {
	upstream := framework.StartRegistry(t, framework.RegistryOptions{})
	mirror := framework.StartRegistry(t, framework.RegistryOptions{})
	mirror.Push(t, "test/mirrored:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	ref := upstream.Ref("test/mirrored:1")
	var mirrors string
	d := startOwnDaemon(t, func(dir string) string {
		mirrors = filepath.Join(dir, "mirrors.d")
		return fmt.Sprintf("# reloadable\n[log]\nlevel = \"info\"\n[image]\nregistry_config_dir = %q\n", filepath.Join(dir, "certs.d"))
	})
	hostDir := filepath.Join(mirrors, upstream.Host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream.URL, mirror.URL)
	writeConfig(t, filepath.Join(hostDir, "hosts.toml"), hosts)
	pid := d.cmd.Process.Pid
	ctx := context.Background()
	pullRef := func() error {
		_, err := d.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	}
	version := func() {
		if _, err := d.rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	debugLines := func() int { return strings.Count(d.log.String(), "level=DEBUG") }

	version()
	if n := debugLines(); n != 0 {
		t.Fatalf("debug lines at level info: %d", n)
	}
	if err := pullRef(); err == nil {
		t.Fatal("pulled from the upstream that lacks the image")
	}

	d.rewrite(t, fmt.Sprintf("[log]\nlevel = \"debug\"\n[image]\nregistry_config_dir = %q\n", mirrors))
	d.reload(t)
	version()
	if !strings.Contains(d.log.String(), `msg="CRI request" method=Version`) {
		t.Fatalf("no debug line for a request after reloading level debug:\n%s", d.log)
	}
	if err := pullRef(); err != nil {
		t.Fatalf("pull through the mirror of the reloaded registry_config_dir: %v", err)
	}

	d.rewrite(t, fmt.Sprintf("[log]\nlevel = \"warn\"\n[image]\nregistry_config_dir = %q\n", mirrors))
	d.reload(t)
	before := len(d.log.String())
	version()
	time.Sleep(100 * time.Millisecond)
	if after := d.log.String()[before:]; strings.Contains(after, "level=DEBUG") || strings.Contains(after, "level=INFO") {
		t.Fatalf("debug or info lines after reloading level warn:\n%s", after)
	}
	if d.cmd.Process.Pid != pid || d.cmd.ProcessState != nil {
		t.Fatal("berth restarted")
	}
}
