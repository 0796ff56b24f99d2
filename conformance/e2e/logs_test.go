package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestKubeletLogRotation: a container writes a numbered line every ~10 ms
// while the kubelet rotates its log (containerLogMaxSize 40Ki,
// containerLogMaxFiles 3: it renames the file, calls berth's
// ReopenContainerLog, compresses the older ones and removes the excess).
// After several rotations and the writer's last line, every line from the
// first still kept to the last is there exactly once, in order, across the
// rotated (decompressed) files and the current one, which are at most 3;
// and berth keeps no rotated file open.
func TestKubeletLogRotation(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-logrot")
	// ~200 bytes a CRI log line: the file passes 40Ki between two of the
	// kubelet's checks.
	pad := strings.Repeat("x", 150)
	script := fmt.Sprintf(`trap 'exit 0' TERM
i=0
while [ ! -e /tmp/stop ]; do i=$((i+1)); echo "line $i %s"; usleep 10000; done
echo "last $i"
while true; do sleep 1; done`, pad)
	createReadyPod(t, c, oneContainerPod(c, ns, "chatty", "writer", []string{"sh", "-c", script}))
	id := berthContainer(t, c, ns, "chatty", "writer")
	st, err := c.Berth.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("berth ContainerStatus: %v", err)
	}
	logPath := st.Status.LogPath
	if !strings.HasPrefix(logPath, c.Kubelet.PodLogsDir+"/") {
		t.Fatalf("log path %s is not under the kubelet's podLogsDir %s", logPath, c.Kubelet.PodLogsDir)
	}

	// Several rotations while the container writes.
	const rotations = 4
	seen := map[string]bool{}
	start := time.Now()
	err = Poll(ctx, 3*time.Minute, 250*time.Millisecond, func() (bool, string, error) {
		for _, f := range rotatedLogs(logPath) {
			seen[strings.TrimSuffix(f, ".gz")] = true
		}
		return len(seen) >= rotations, fmt.Sprintf("%d rotations seen: %v", len(seen), rotatedLogs(logPath)), nil
	})
	if err != nil {
		t.Fatalf("log rotation of %s: %v", logPath, err)
	}
	t.Logf("%d rotations in %v", len(seen), time.Since(start).Round(time.Millisecond))
	execInBerth(t, c, id, "touch", "/tmp/stop")

	// Files move while the kubelet works (rename, compress, remove): read
	// until one reading holds the last line and is consistent. A line lost
	// or written twice by berth stays so in every reading.
	var lines []string
	var problem string
	err = Poll(ctx, time.Minute, time.Second, func() (bool, string, error) {
		var files []string
		lines, files, problem = readRotatedLog(logPath)
		if problem == "" {
			problem = checkNumbered(lines)
		}
		if problem == "" && len(files) > ContainerLogMaxFiles {
			problem = fmt.Sprintf("%d log files, want at most %d: %v", len(files), ContainerLogMaxFiles, files)
		}
		return problem == "", problem, nil
	})
	if err != nil {
		t.Fatalf("rotated log of %s: %v", logPath, err)
	}
	first, _ := lineNumber(lines[0])
	t.Logf("lines %d..%s kept across the rotated files", first, strings.TrimPrefix(lines[len(lines)-1], "last "))

	// berth (its log writer, or anything) keeps only the current file open
	// (the kubelet may be compressing one for a moment).
	err = Poll(ctx, 30*time.Second, 500*time.Millisecond, func() (bool, string, error) {
		var held []string
		for fd, target := range openFilesUnder(filepath.Dir(logPath)) {
			if target != logPath {
				held = append(held, fd+" -> "+target)
			}
		}
		return len(held) == 0, fmt.Sprintf("rotated-away log files still open: %v", held), nil
	})
	if err != nil {
		t.Errorf("want only %s open: %v", logPath, err)
	}
}

// rotatedLogs lists the log's rotated files (the kubelet names them
// <log>.<timestamp>, compressed ones <log>.<timestamp>.gz), oldest first.
func rotatedLogs(logPath string) []string {
	files, _ := filepath.Glob(logPath + ".*")
	var out []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".tmp") { // being compressed
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.TrimSuffix(out[i], ".gz") < strings.TrimSuffix(out[j], ".gz") })
	return out
}

// readRotatedLog returns the stdout lines of the rotated files and the
// current one, oldest first, and the files read; or what went wrong.
func readRotatedLog(logPath string) (lines, files []string, problem string) {
	files = append(rotatedLogs(logPath), logPath)
	var partial string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, files, err.Error()
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, files, fmt.Sprintf("%s: %v", f, err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				return nil, files, fmt.Sprintf("%s: %v", f, err)
			}
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l == "" {
				continue
			}
			// <RFC3339Nano time> <stream> <P|F> <content>
			w := strings.SplitN(l, " ", 4)
			if len(w) < 3 || (w[2] != "P" && w[2] != "F") {
				return nil, files, fmt.Sprintf("not a CRI log line in %s: %q", f, l)
			}
			content := ""
			if len(w) == 4 {
				content = w[3]
			}
			if w[1] != "stdout" {
				continue
			}
			if w[2] == "P" {
				partial += content
				continue
			}
			lines = append(lines, partial+content)
			partial = ""
		}
	}
	if len(lines) == 0 {
		return nil, files, "no lines"
	}
	return lines, files, ""
}

// lineNumber parses "line <n> <pad>".
func lineNumber(l string) (int, bool) {
	f := strings.Fields(l)
	if len(f) != 3 || f[0] != "line" {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// checkNumbered checks that lines are "line n" for consecutive n, then
// "last <the last n>"; it returns what is wrong.
func checkNumbered(lines []string) string {
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "last ") {
		return fmt.Sprintf("the writer's last line is not there yet (the log ends with %.40q)", last)
	}
	prev := -1
	for i, l := range lines[:len(lines)-1] {
		n, ok := lineNumber(l)
		if !ok {
			return fmt.Sprintf("line %d of the log is %.60q, want \"line <n> ...\"", i, l)
		}
		if prev >= 0 && n != prev+1 {
			return fmt.Sprintf("line %d follows line %d (want every line once, in order)", n, prev)
		}
		prev = n
	}
	if want := fmt.Sprintf("last %d", prev); last != want {
		return fmt.Sprintf("the log ends with %q after line %d, want %q", last, prev, want)
	}
	return ""
}

// openFilesUnder maps the open file descriptors (/proc/<pid>/fd/<n>) of
// files below dir to the files (" (deleted)" when removed).
func openFilesUnder(dir string) map[string]string {
	out := map[string]string{}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, dir+"/") {
			out[fd] = target
		}
	}
	return out
}
