package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"golang.org/x/sys/unix"
)

// The streaming scenarios: kubectl -> apiserver -> kubelet -> berth's
// streaming server (the URLs of its Exec, Attach and PortForward RPCs),
// and the kubelet reading berth's CRI log for logs -f.

// TestKubectlExecTTY: `kubectl exec -it` under a real terminal (a pty of
// the test's own) gets a shell whose stdin is a tty of the size of the
// local terminal, follows a resize of it, and ends with the shell's exit
// status; berth leaves no trace of the exec's process in the container.
func TestKubectlExecTTY(t *testing.T) {
	c := getCluster(t)
	ns := newNamespace(t, c, "e2e-exec")
	createReadyPod(t, c, oneContainerPod(c, ns, "shell", "main", loopCommand("shell up")))

	ptm, pts := openPTY(t)
	setWinsize(t, ptm, 40, 100)
	cmd := exec.Command(filepath.Join(c.BinDir, "kubectl"), "--kubeconfig="+c.ControlPlane.AdminKubeconfig,
		"-n", ns, "exec", "-it", "shell", "-c", "main", "--", "sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	// A session of its own whose controlling terminal is the pty: kubectl
	// then gets SIGWINCH when the terminal is resized, as in a shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	term := &syncBuffer{}
	go func() { _, _ = io.Copy(term, ptm) }() // ends with EIO once kubectl is gone

	waitTerm := func(what string, ok func(string) bool) string {
		t.Helper()
		var out string
		err := Poll(t.Context(), 30*time.Second, 100*time.Millisecond, func() (bool, string, error) {
			out = term.String()
			if ok(out) {
				return true, "", nil
			}
			select {
			case err := <-done:
				done <- err
				return false, "", fmt.Errorf("kubectl exited (%v) before %s", err, what)
			default:
			}
			return false, "no " + what + " yet", nil
		})
		if err != nil {
			t.Fatalf("kubectl exec -it: %v; terminal:\n%q", err, out)
		}
		return out
	}
	typeLine := func(s string) {
		t.Helper()
		if _, err := ptm.Write([]byte(s + "\r")); err != nil {
			t.Fatalf("write to the terminal: %v", err)
		}
	}
	waitTerm("prompt", func(s string) bool { return strings.Contains(s, "# ") })
	// The echo of the command line holds "$((6*7))", its output "out-42".
	typeLine("tty; [ -t 0 ] && echo stdin-is-a-tty; echo pid-$$; echo out-$((6*7))")
	out := waitTerm("command output", func(s string) bool { return strings.Contains(s, "out-42") })
	for _, want := range []string{"/dev/pts/", "stdin-is-a-tty"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal shows no %q: want a shell on a tty\n%q", want, out)
		}
	}
	m := regexp.MustCompile(`pid-(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the shell printed no PID:\n%q", out)
	}
	shellPID := m[1]

	// The container's tty has the local terminal's size, and follows its
	// resizes (kubectl's resize stream, berth's resize of the exec's
	// console; asynchronous, hence the repeated question).
	for _, size := range [][2]uint16{{40, 100}, {50, 120}} {
		want := fmt.Sprintf("size-%dx%d", size[0], size[1])
		setWinsize(t, ptm, size[0], size[1])
		err := Poll(t.Context(), 20*time.Second, time.Second, func() (bool, string, error) {
			if strings.Contains(term.String(), want) {
				return true, "", nil
			}
			typeLine("echo size-$(stty size | tr ' ' x)")
			return false, "the container's tty is not " + want[5:] + " yet", nil
		})
		if err != nil {
			t.Errorf("with the terminal at %dx%d: %v\n%q", size[0], size[1], err, term.String())
		}
	}

	typeLine("exit 7")
	select {
	case err := <-done:
		done <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("kubectl exec -it ended with %v, want exit status 7 (the shell's)\n%q", err, term.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl exec -it did not end after exit 7:\n%q", term.String())
	}
	// berth reaped the exec's shell: not even a zombie is left in the
	// container (ExecSync through the CRI).
	id := berthContainer(t, c, ns, "shell", "main")
	err := Poll(t.Context(), 10*time.Second, 250*time.Millisecond, func() (bool, string, error) {
		resp, err := c.Berth.Runtime.ExecSync(t.Context(), &runtimeapi.ExecSyncRequest{ContainerId: id,
			Cmd: []string{"sh", "-c", "cat /proc/" + shellPID + "/status 2>/dev/null | grep State"}, Timeout: 10})
		if err != nil {
			return false, "", err
		}
		return resp.ExitCode != 0, fmt.Sprintf("the exec's shell (pid %s) is still there: %s", shellPID, resp.Stdout), nil
	})
	if err != nil {
		t.Errorf("after the exec ended: %v", err)
	}
}

// openPTY opens a pseudo-terminal pair; the test's cleanup closes the
// master (the slave is the caller's to close once a child has it).
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("pty number: %v", err)
	}
	ptm = os.NewFile(uintptr(fd), "/dev/ptmx") // non-blocking: in Go's poller
	t.Cleanup(func() { ptm.Close() })
	pts, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	return ptm, pts
}

// setWinsize sets the terminal's size, as a terminal emulator does.
func setWinsize(t *testing.T, ptm *os.File, rows, cols uint16) {
	t.Helper()
	raw, err := ptm.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ierr error
	if err := raw.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil || ierr != nil {
		t.Fatalf("set window size: %v %v", err, ierr)
	}
}

// TestKubectlAttach: `kubectl attach -i` to a container with a one-shot
// stdin: what it writes reaches the container, the container's output comes
// back, and closing kubectl's stdin closes the container's, which then ends
// on its own (exit 0, pod Succeeded).
func TestKubectlAttach(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-attach")
	pod := oneContainerPod(c, ns, "reader", "main", []string{"sh", "-c",
		`echo reader up; while read line; do echo "got:$line"; done; echo stdin-closed`})
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Containers[0].Stdin, pod.Spec.Containers[0].StdinOnce = true, true
	createReadyPod(t, c, pod)
	id := berthContainer(t, c, ns, "reader", "main")

	k := startKubectl(t, c, true, "-n", ns, "attach", "-i", "reader", "-c", "main")
	if _, err := io.WriteString(k.stdin, "hello-berth\n"); err != nil {
		t.Fatal(err)
	}
	k.waitOutput(t, 30*time.Second, "the container's answer", func(s string) bool { return strings.Contains(s, "got:hello-berth") })
	if _, err := io.WriteString(k.stdin, "second line\n"); err != nil {
		t.Fatal(err)
	}
	k.waitOutput(t, 30*time.Second, "the second answer", func(s string) bool { return strings.Contains(s, "got:second line") })

	// End of kubectl's stdin: with stdinOnce the container's stdin closes.
	k.stdin.Close()
	err := Poll(ctx, time.Minute, 250*time.Millisecond, func() (bool, string, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "reader", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return p.Status.Phase == corev1.PodSucceeded, fmt.Sprintf("pod is %s%s", p.Status.Phase, waitingReasons(p)), nil
	})
	if err != nil {
		t.Errorf("after closing kubectl attach's stdin (the container's stdinOnce stdin): %v", err)
	}
	st, err := c.Berth.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("berth ContainerStatus: %v", err)
	}
	if s := st.Status; s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 0 {
		t.Errorf("berth: container %s is %s, exit %d (%s); want exited 0", id, s.State, s.ExitCode, s.Reason)
	}
	if b, err := os.ReadFile(st.Status.LogPath); err != nil {
		t.Errorf("container log: %v", err)
	} else {
		for _, want := range []string{" stdout F got:hello-berth\n", " stdout F got:second line\n", " stdout F stdin-closed\n"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("container log %s lacks %q:\n%s", st.Status.LogPath, want, b)
			}
		}
	}
	select {
	case <-k.done:
		if k.err != nil {
			t.Errorf("kubectl attach ended with %v:\n%s", k.err, k.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("kubectl attach still runs after its container ended:\n%s", k.out.String())
	}
}

// TestKubectlPortForward: `kubectl port-forward` to a pod's busybox httpd
// (berth's PortForward dials it inside the pod's network namespace) serves
// its page on a local port, over several connections.
func TestKubectlPortForward(t *testing.T) {
	c := getCluster(t)
	ns := newNamespace(t, c, "e2e-portfwd")
	page := "served-through-port-forward-" + ns
	createReadyPod(t, c, oneContainerPod(c, ns, "web", "httpd", httpdCommand(8080, page)))

	k := startKubectl(t, c, false, "-n", ns, "port-forward", "--address=127.0.0.1", "pod/web", ":8080")
	re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
	out := k.waitOutput(t, 30*time.Second, "forwarding", re.MatchString)
	url := "http://127.0.0.1:" + re.FindStringSubmatch(out)[1] + "/index.html"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 { // each request its own connection, so its own stream
		var body string
		err := Poll(t.Context(), 30*time.Second, 250*time.Millisecond, func() (bool, string, error) {
			resp, err := client.Get(url)
			if err != nil {
				return false, err.Error(), nil // httpd may not listen yet
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s: %q", resp.Status, b), nil
		})
		if err != nil {
			t.Fatalf("GET %s (#%d): %v\nkubectl: %s", url, i, err, k.out.String())
		}
		if strings.TrimSpace(body) != page {
			t.Errorf("GET %s (#%d) = %q, want %q", url, i, body, page)
		}
	}
	k.stop()
}

// TestKubectlLogsFollow: `kubectl logs -f` of a container printing a
// numbered line every 200 ms shows new lines as they are written, each
// once and in order.
func TestKubectlLogsFollow(t *testing.T) {
	c := getCluster(t)
	ns := newNamespace(t, c, "e2e-logsf")
	createReadyPod(t, c, oneContainerPod(c, ns, "ticker", "main", []string{"sh", "-c",
		"trap 'exit 0' TERM; i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"}))

	k := startKubectl(t, c, false, "-n", ns, "logs", "-f", "ticker", "-c", "main")
	ticks := func(s string) []int {
		var n []int
		for _, l := range strings.Split(s, "\n") {
			if v, err := strconv.Atoi(strings.TrimPrefix(l, "tick-")); err == nil && strings.HasPrefix(l, "tick-") {
				n = append(n, v)
			}
		}
		return n
	}
	out := k.waitOutput(t, 30*time.Second, "a tick", func(s string) bool { return len(ticks(s)) > 0 })
	first := ticks(out)
	last := first[len(first)-1]
	// Lines written after kubectl started following arrive through it.
	out = k.waitOutput(t, 30*time.Second, fmt.Sprintf("tick-%d", last+10), func(s string) bool {
		n := ticks(s)
		return n[len(n)-1] >= last+10
	})
	all := ticks(out)
	if all[0] != 0 {
		t.Errorf("kubectl logs -f starts at tick-%d, want tick-0 (the whole log first)", all[0])
	}
	for i := 1; i < len(all); i++ {
		if all[i] != all[i-1]+1 {
			t.Errorf("kubectl logs -f shows tick-%d after tick-%d: want every line once, in order:\n%s", all[i], all[i-1], out)
			break
		}
	}
	if done, err := k.exited(); done {
		t.Errorf("kubectl logs -f ended (%v) while its container runs", err)
	}
	k.stop()
	// What the kubelet served is berth's CRI log.
	st, err := c.Berth.Runtime.ContainerStatus(t.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: berthContainer(t, c, ns, "ticker", "main")})
	if err != nil {
		t.Fatalf("berth ContainerStatus: %v", err)
	}
	if b, err := os.ReadFile(st.Status.LogPath); err != nil || !strings.Contains(string(b), fmt.Sprintf(" stdout F tick-%d\n", all[len(all)-1])) {
		t.Errorf("berth's log %s lacks tick-%d: %v\n%.500s", st.Status.LogPath, all[len(all)-1], err, b)
	}
}
