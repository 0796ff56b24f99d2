package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// reloadDaemon is a berth of the test's own whose config file the test
// rewrites and reloads with SIGHUP.
type reloadDaemon struct {
	d    *framework.Daemon
	file string
}

func newReloadDaemon(t *testing.T, content string) *reloadDaemon {
	t.Helper()
	framework.SkipIfExternal(t)
	r := &reloadDaemon{file: filepath.Join(t.TempDir(), "berth.toml")}
	r.write(t, content)
	// The last --config wins over the empty file the framework passes.
	r.d = framework.StartDaemon(t, framework.DaemonOptions{Args: []string{"--config", r.file}})
	return r
}

func (r *reloadDaemon) write(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(r.file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reload sends SIGHUP and waits for the daemon to log the outcome; it
// returns the log lines of this reload.
func (r *reloadDaemon) reload(t *testing.T) string {
	t.Helper()
	before := len(r.d.Logs())
	pid := r.d.Pid()
	if err := r.d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var lines string
	waitFor(t, func() bool {
		lines = r.d.Logs()[before:]
		return strings.Contains(lines, "config reloaded") || strings.Contains(lines, "config reload refused")
	})
	if r.d.Exited() || r.d.Pid() != pid {
		t.Fatal("berth did not survive the reload")
	}
	return lines
}

func pinnedStatus(t *testing.T, d *framework.Daemon, ref string) bool {
	t.Helper()
	resp, err := d.Images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil || resp.Image == nil {
		t.Fatalf("ImageStatus(%s): %v %v", ref, resp, err)
	}
	return resp.Image.Pinned
}

// A mirror configured while berth runs serves the next pull: no restart.
// And SIGHUP (a real reload) leaves the mirror config working.
func TestRegistryMirrorTakesEffectWithoutRestart(t *testing.T) {
	r := newReloadDaemon(t, "")
	tg := &framework.Target{Conn: r.d.Conn, Runtime: r.d.Runtime, Images: r.d.Images, Daemon: r.d}
	upstream := framework.StartRegistry(t, framework.RegistryOptions{})
	mirror := framework.StartRegistry(t, framework.RegistryOptions{})
	img := framework.MustBuildImage(t, framework.ImageSpec{})
	mirror.Push(t, "conformance/mirrored:1", img)
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ref := upstream.Ref("conformance/mirrored:1")
	if _, err := pull(t, tg, ref, nil); status.Code(err) != codes.NotFound {
		t.Fatalf("pull from an upstream without the image: %v, want NotFound", err)
	}
	hostDir := filepath.Join(r.d.RegistryConfigDir, upstream.Host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream.URL, mirror.URL)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := r.reload(t)
	if !strings.Contains(logs, "config reloaded") {
		t.Fatalf("reload of an unchanged file:\n%s", logs)
	}
	pid := r.d.Pid()
	if _, err := pull(t, tg, ref, nil); err != nil {
		t.Fatalf("pull through the mirror configured since the start: %v", err)
	}
	if mirror.BlobFetches(cfgDigest.String()) == 0 {
		t.Error("the mirror did not serve the image")
	}
	if r.d.Pid() != pid {
		t.Fatal("berth restarted")
	}
}

// pinned_images is reloaded: kubelet's image GC sees the new pins at once.
// An invalid file (a syntax error, an unknown key, a bad value) is refused
// with its problems logged, and the old config keeps working.
func TestReloadPinnedImagesAndRefuseInvalid(t *testing.T) {
	r := newReloadDaemon(t, "[image]\npinned_images = []\n")
	tg := &framework.Target{Conn: r.d.Conn, Runtime: r.d.Runtime, Images: r.d.Images, Daemon: r.d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, _ := reg.Push(t, "conformance/pinme:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	if _, err := pull(t, tg, ref, nil); err != nil {
		t.Fatal(err)
	}
	if pinnedStatus(t, r.d, ref) {
		t.Fatal("pinned before any pin")
	}

	r.write(t, fmt.Sprintf("[image]\npinned_images = [%q]\n[log]\nlevel = \"warn\"\n", ref))
	logs := r.reload(t)
	if !strings.Contains(logs, "config reloaded") || !strings.Contains(logs, "image.pinned_images") {
		t.Fatalf("reload not applied:\n%s", logs)
	}
	if !pinnedStatus(t, r.d, ref) {
		t.Fatal("not pinned after the reload")
	}
	// The framework's --log-level flag keeps winning over the file.
	if !strings.Contains(logs, "log.level (flag --log-level)") {
		t.Errorf("a file change a flag overrides is not explained:\n%s", logs)
	}

	for name, bad := range map[string]string{
		"syntax":      "[image\npinned_images = []\n",
		"unknown key": "[image]\npinned_images = []\npinned_imagez = []\n",
		"bad value":   "[image]\npinned_images = [\"UPPER/Case::x\"]\n",
	} {
		r.write(t, bad)
		logs := r.reload(t)
		if !strings.Contains(logs, "config reload refused") || !strings.Contains(logs, r.file) {
			t.Errorf("%s: the refusal is not logged with the file:\n%s", name, logs)
		}
		if !pinnedStatus(t, r.d, ref) {
			t.Fatalf("%s: a refused reload dropped the running pins", name)
		}
	}
	// The running config keeps working: pulls and pods' calls go on.
	ref2, _ := reg.Push(t, "conformance/after:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	if _, err := pull(t, tg, ref2, nil); err != nil {
		t.Fatalf("pull after refused reloads: %v", err)
	}
	if _, err := r.d.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}

	// A key that needs a restart is named, and nothing else breaks.
	r.write(t, fmt.Sprintf("shutdown_timeout = \"3s\"\n[image]\npinned_images = [%q]\n", ref))
	logs = r.reload(t)
	if !strings.Contains(logs, "need a restart") || !strings.Contains(logs, "shutdown_timeout") {
		t.Errorf("a key that needs a restart is not named:\n%s", logs)
	}
}

// Requests in flight ride through a reload: a slow pull started before the
// SIGHUP finishes, and calls made during it are answered.
func TestReloadDropsNoRequest(t *testing.T) {
	r := newReloadDaemon(t, "")
	tg := &framework.Target{Conn: r.d.Conn, Runtime: r.d.Runtime, Images: r.d.Images, Daemon: r.d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{BytesPerSecond: 256 << 10})
	ref, _ := reg.Push(t, "conformance/slow:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	pulled := make(chan error, 1)
	go func() {
		_, err := pull(t, tg, ref, nil)
		pulled <- err
	}()
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < 5; i++ {
		r.reload(t)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, err := r.d.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err != nil {
			t.Fatalf("Version after reload %d: %v", i, err)
		}
	}
	if err := <-pulled; err != nil {
		t.Fatalf("a pull in flight during reloads failed: %v", err)
	}
}
