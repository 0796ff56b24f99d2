package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
)

const unitFile = "../../contrib/systemd/berth.service"

// The unit keeps what an operator of a node relies on: pods survive a
// restart of berth, berth manages cgroups, has file descriptors for a full
// node, restarts, reloads by SIGHUP and starts when the network is up.
func TestSystemdUnitSettings(t *testing.T) {
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"Type=notify", "ExecStart=/usr/local/bin/berth", "ExecReload=/bin/kill -HUP $MAINPID",
		"KillMode=process", "Delegate=yes", "Restart=always", "LimitNOFILE=1048576",
		"RuntimeDirectory=berth", "RuntimeDirectoryPreserve=yes", "RuntimeDirectoryMode=0711",
		"After=network-online.target local-fs.target", "Wants=network-online.target", "WantedBy=multi-user.target",
	} {
		if !lines[want] {
			t.Errorf("%s lacks the line %q", unitFile, want)
		}
	}
}

// systemd-analyze verify accepts the unit without a single warning, when
// systemd's tools are installed (they are on Debian with systemd, also
// where systemd is not init). ExecStart must be executable for verify, so
// a copy points it at the berth built for the tests.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "berth.service")
	text := strings.Replace(string(b), "ExecStart=/usr/local/bin/berth", "ExecStart="+framework.BerthBinary(t), 1)
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	// Unknown keys and bad values are only warnings (exit 0): any output
	// is a failure.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// listenNotify is a stand-in for systemd's notification socket.
func listenNotify(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(framework.ShortTempDir(t), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return path, conn
}

func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifierSendsState(t *testing.T) {
	path, conn := listenNotify(t)
	if err := (notifier{socket: path}).notify(sdReady); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, conn); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
	if err := (notifier{}).notify(sdReady); err != nil {
		t.Fatalf("outside systemd notify must do nothing: %v", err)
	}
	if err := (notifier{socket: "relative.sock"}).notify(sdReady); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET was accepted")
	}
}

// Under systemd (NOTIFY_SOCKET set) berth says READY=1 once it serves,
// RELOADING=1 then READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM.
func TestDaemonNotifiesSystemd(t *testing.T) {
	framework.RequireRoot(t)
	path, conn := listenNotify(t)
	dir := t.TempDir()
	sock := filepath.Join(framework.ShortTempDir(t), "berth.sock")
	cmd := exec.Command(framework.BerthBinary(t), "--listen", "unix://"+sock, "--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"), "--cni-conf-dir", filepath.Join(dir, "net.d"),
		"--config", filepath.Join(dir, "empty.toml"))
	if err := os.WriteFile(filepath.Join(dir, "empty.toml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("--- berth log ---\n%s", logs)
		}
	})
	if got := readNotify(t, conn); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("READY=1 before the socket exists: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	for _, want := range []string{"RELOADING=1", "READY=1"} {
		if got := readNotify(t, conn); got != want {
			t.Fatalf("after SIGHUP: %q, want %q", got, want)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if got := readNotify(t, conn); got != "STOPPING=1" {
		t.Fatalf("after SIGTERM: %q, want STOPPING=1", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("berth exited with %v", err)
	}
}
