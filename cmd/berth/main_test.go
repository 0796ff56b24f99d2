package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMain(m *testing.M) { framework.Main(m) }

// berth runs the built binary to completion and returns its exit code and output.
func berth(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(framework.BerthBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestVersionCommand(t *testing.T) {
	code, out, _ := berth(t, "version")
	if code != 0 || !strings.Contains(out, "berth") || !strings.Contains(out, "k8s.io/cri-api") || !strings.Contains(out, "CRI API") {
		t.Fatalf("berth version: exit %d\n%s", code, out)
	}
}

func TestConfigCommandPrintsEffectiveConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.toml")
	if err := os.WriteFile(path, []byte("cgroup_driver = \"systemd\"\n[log]\nlevel = \"warn\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Flags may come before or after the subcommand.
	code, out, errOut := berth(t, "--config", path, "config", "--root", "/srv/berth", "--cni-bin-dir", "/a", "--cni-bin-dir", "/b")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"cgroup_driver = 'systemd'", "root = '/srv/berth'", "level = 'warn'", "bin_dirs = ['/a', '/b']"} {
		if !strings.Contains(out, want) {
			t.Errorf("berth config output lacks %q:\n%s", want, out)
		}
	}
}

func TestUnknownKeyRefusedByName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.toml")
	if err := os.WriteFile(path, []byte("[cni]\nconf_dirs = \"/etc/cni/net.d\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(framework.ShortTempDir(t), "berth.sock")
	code, _, errOut := berth(t, "--config", path, "--listen", "unix://"+sock, "--root", t.TempDir(), "--state", t.TempDir())
	if code == 0 || !strings.Contains(errOut, `"cni.conf_dirs"`) || !strings.Contains(errOut, path) {
		t.Fatalf("want a refusal naming cni.conf_dirs and %s; exit %d: %s", path, code, errOut)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Fatal("a refused daemon created its socket")
	}
}

func TestInvalidFlagValueRefused(t *testing.T) {
	code, _, errOut := berth(t, "--cgroup-driver", "cgroupsfs", "config")
	if code == 0 || !strings.Contains(errOut, "--cgroup-driver") || !strings.Contains(errOut, "cgroupsfs") {
		t.Fatalf("want a refusal naming --cgroup-driver; exit %d: %s", code, errOut)
	}
}

func TestSocketPermissions(t *testing.T) {
	sock := filepath.Join(framework.ShortTempDir(t), "sub", "berth.sock")
	d := framework.StartDaemon(t, framework.DaemonOptions{Socket: sock})
	st, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", st.Mode())
	}
	dst, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o711 {
		t.Errorf("socket directory mode %v, want 0711", dst.Mode().Perm())
	}
}

// listen_group gives the socket to a group (by name or GID), so that its
// members can use crictl without root; an unknown group is refused.
func TestSocketGroup(t *testing.T) {
	for _, group := range []string{"4242", "daemon"} {
		sock := filepath.Join(framework.ShortTempDir(t), "berth.sock")
		d := framework.StartDaemon(t, framework.DaemonOptions{Socket: sock, Args: []string{"--listen-group", group}})
		var st unix.Stat_t
		if err := unix.Stat(d.Socket, &st); err != nil {
			t.Fatal(err)
		}
		want := uint32(4242)
		if group == "daemon" {
			want = 1 // Debian's daemon group
		}
		if st.Gid != want || st.Mode&0o777 != 0o660 {
			t.Errorf("listen_group %s: socket group %d mode %o, want %d and 0660", group, st.Gid, st.Mode&0o777, want)
		}
	}
	code, _, errOut := berth(t, "--listen-group", "no-such-group-here", "config")
	if code == 0 || !strings.Contains(errOut, "listen-group") {
		t.Fatalf("an unknown group: exit %d: %s", code, errOut)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	sock := filepath.Join(framework.ShortTempDir(t), "berth.sock")
	// A socket file nobody listens on, as a crashed daemon leaves it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	d := framework.StartDaemon(t, framework.DaemonOptions{Socket: sock})
	if _, err := d.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestLiveSocketIsNotStolen(t *testing.T) {
	sock := filepath.Join(framework.ShortTempDir(t), "berth.sock")
	// Some other process serves on the socket (no berth lock file involved).
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, err = framework.LaunchDaemon(t, framework.DaemonOptions{Socket: sock})
	if err == nil || !strings.Contains(err.Error(), "another process is serving on "+sock) {
		t.Fatalf("want a refusal to take over a live socket, got %v", err)
	}
}

func TestNonSocketFileIsNotRemoved(t *testing.T) {
	sock := filepath.Join(framework.ShortTempDir(t), "berth.sock")
	if err := os.WriteFile(sock, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := framework.LaunchDaemon(t, framework.DaemonOptions{Socket: sock})
	if err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("want a refusal, got %v", err)
	}
	if b, _ := os.ReadFile(sock); string(b) != "precious" {
		t.Fatal("berth removed a file that was not its socket")
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	first := framework.StartDaemon(t, framework.DaemonOptions{})
	// Same socket, different root and state.
	_, err := framework.LaunchDaemon(t, framework.DaemonOptions{Socket: first.Socket})
	if err == nil || !strings.Contains(err.Error(), "another berth is already running") {
		t.Fatalf("second daemon on the same socket: %v", err)
	}
	// Same root, different socket and state.
	_, err = framework.LaunchDaemon(t, framework.DaemonOptions{Root: first.Root})
	if err == nil || !strings.Contains(err.Error(), "another berth is already running with "+first.Root) {
		t.Fatalf("second daemon on the same root: %v", err)
	}
	// The first one is unharmed.
	if _, err := first.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("first daemon broken by the refused second: %v", err)
	}
}

func TestSIGTERMExitsCleanlyAndSIGHUPDoesNot(t *testing.T) {
	d := framework.StartDaemon(t, framework.DaemonOptions{})
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil || d.Exited() {
		t.Fatalf("daemon did not survive SIGHUP: %v", err)
	}
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(30 * time.Second); err != nil {
		t.Fatalf("want exit 0 on SIGTERM, got %v", err)
	}
	if _, err := os.Stat(d.Socket); err == nil {
		t.Error("socket left behind after a clean stop")
	}
	// The same directories serve a new daemon right away: the locks are gone.
	restarted := framework.StartDaemon(t, framework.DaemonOptions{Socket: d.Socket, Root: d.Root, State: d.State})
	if _, err := restarted.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestSIGKILLedDaemonRestarts(t *testing.T) {
	d := framework.StartDaemon(t, framework.DaemonOptions{})
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.Wait(30 * time.Second)
	// Socket file and lock files are left behind; the next start copes.
	restarted := framework.StartDaemon(t, framework.DaemonOptions{Socket: d.Socket, Root: d.Root, State: d.State})
	if _, err := restarted.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
}
