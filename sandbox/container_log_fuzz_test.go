package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// FuzzLogPath checks where a container's log goes: the pod's
// log_directory (RunPodSandbox) joined with the container's log_path
// (CreateContainer), on a real directory that may hold a symlink (its name
// and target fuzzed) pointing elsewhere.
//
// Properties: nothing panics; every refusal is InvalidArgument; an
// accepted log directory is absolute without ".." or NUL; an accepted log
// path is local, and joined to an accepted directory it stays inside it
// and fits in a path;
// and when the log file is then made as the monitor makes it (its
// directory created, the file opened for appending) it is inside the log
// directory, never through a symlink: nothing appears outside it.
func FuzzLogPath(f *testing.F) {
	const podDir = "/var/log/pods/default_web-7c5ddbdf54-x2x9k_0b1f5c7e-3f1a-4c55-9a57-2f1c2ad1c0de"
	for _, s := range []struct{ logDir, logPath, linkName, linkTarget string }{
		{podDir, "web/0.log", "", ""},
		{podDir, "web/1.log", "web", ""},              // the container's directory is a symlink out
		{podDir, "web/2.log", "web/2.log", ""},        // the log file is a symlink out
		{podDir, "web/3.log", "web", "../../outside"}, // relative symlink out
		{podDir, "web/3.log", "web", "other"},         // symlink to a sibling inside
		{podDir, "web/0.log", "web/0.log", "/etc/shadow"},
		{podDir, "web/../../../etc/passwd", "", ""},
		{podDir, "../0.log", "", ""},
		{podDir, "/var/log/pods/x/0.log", "", ""},
		{podDir, "./web//0.log", "", ""},
		{podDir, "web/0.log\x00.txt", "", ""},
		{"/var/log/pods/../../../etc", "cron.d/evil", "", ""},
		{"var/log/pods/x", "web/0.log", "", ""},
		{"/var/log/pods/x\x00", "web/0.log", "", ""},
		{"/", "etc/cron.d/x", "", ""},
		{"/tmp", "busybox.0.log", "", ""},
		{podDir + "/" + strings.Repeat("d", 5000), strings.Repeat("l/", 2000) + "0.log", strings.Repeat("l", 300), ""},
		{"/var/log/pods/ポッド", "コンテナ/0.log", "コンテナ", "../../外"},
		{"", "", "", ""},
	} {
		f.Add(s.logDir, s.logPath, s.linkName, s.linkTarget)
	}
	f.Fuzz(func(t *testing.T, logDir, logPath, linkName, linkTarget string) {
		dirErr := validateLogDirectory(logDir)
		if dirErr != nil && !errdefs.IsInvalidArgument(dirErr) {
			t.Fatalf("log directory %s: %v is not InvalidArgument", short(logDir), dirErr)
		}
		if dirErr == nil && logDir != "" &&
			(!filepath.IsAbs(logDir) || slices.Contains(strings.Split(logDir, "/"), "..") || strings.ContainsRune(logDir, 0)) {
			t.Fatalf("accepted log directory %s", short(logDir))
		}
		rel, err := cleanLogPath(logPath)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("log path %s: %v is not InvalidArgument", short(logPath), err)
			}
			return
		}
		if rel != "" && (!filepath.IsLocal(rel) || strings.ContainsRune(rel, 0)) {
			t.Fatalf("accepted log path %s", short(logPath))
		}
		if dirErr == nil && logDir != "" && rel != "" {
			if r, err := filepath.Rel(logDir, filepath.Join(logDir, rel)); err != nil || !filepath.IsLocal(r) {
				t.Fatalf("log path %s leaves log directory %s", short(rel), short(logDir))
			}
		}
		if rel == "" {
			return
		}

		// On a real log directory, with a symlink in it.
		base := t.TempDir()
		dir, outside := filepath.Join(base, "pods", "ns_pod_uid"), filepath.Join(base, "outside")
		for _, d := range []string{dir, outside} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		makeLink(dir, outside, linkName, linkTarget)
		p, err := containerLogPath(dir, rel)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("log path %s: %v is not InvalidArgument", short(rel), err)
			}
			return
		}
		if p != filepath.Join(dir, rel) || len(p) >= unix.PathMax {
			t.Fatalf("log path %s in %s became %s", short(rel), dir, short(p))
		}
		if strings.Count(rel, "/") > 64 {
			return // making thousands of nested directories takes seconds
		}
		// What the monitor does with it (errors are fine: the path may name
		// a directory or be too long; escaping is not).
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err == nil {
				f.Close()
			}
		}
		if entries, _ := os.ReadDir(outside); len(entries) > 0 {
			t.Fatalf("log path %s (link %s -> %s) made %s outside the log directory", short(rel), short(linkName), short(linkTarget), entries[0].Name())
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if r, err := filepath.Rel(dir, real); err != nil || !filepath.IsLocal(r) {
				t.Fatalf("log path %s resolves to %s, outside %s", short(rel), real, dir)
			}
		}
	})
}

// makeLink puts a symlink named name (a local path) into dir. Its target
// is the directory outside (if target is empty), or target if that is a
// relative path that stays below dir's parent, else target inside outside
// (so that the test itself never writes anywhere else). A name that cannot
// be made is skipped.
func makeLink(dir, outside, name, target string) {
	if name == "" || !filepath.IsLocal(name) || strings.ContainsRune(name, 0) || len(name) > 1024 || strings.ContainsRune(target, 0) {
		return
	}
	link := filepath.Join(dir, name)
	switch {
	case target == "":
		target = outside
	case filepath.IsAbs(target):
		target = filepath.Join(outside, target)
	default:
		if r, err := filepath.Rel(filepath.Dir(dir), filepath.Join(filepath.Dir(link), target)); err != nil || !filepath.IsLocal(r) {
			target = outside
		}
	}
	if os.MkdirAll(filepath.Dir(link), 0o755) != nil {
		return
	}
	_ = os.Symlink(target, link)
}

// short quotes s, cut to a readable length (fuzzed strings can be long).
func short(s string) string {
	if len(s) > 300 {
		s = s[:150] + "..." + s[len(s)-150:]
	}
	return strconv.Quote(s)
}
