package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procSelector names a runtime's processes: the daemon by PID, the per-pod
// processes by program name (berth-monitor, containerd-shim-runc-v2) and,
// because other runtimes may run on the same machine, by a string their
// command line must contain (the daemon's state dir or socket path).
type procSelector struct {
	DaemonPID int
	Name      string
	Match     string
}

// pss is a process's proportional set size (shared pages divided among
// the processes sharing them) from /proc/<pid>/smaps_rollup, split into
// anonymous memory and file pages (mostly its binary's text: a share of
// it moves to other processes mapping the same binary while they run).
type pss struct{ Total, Anon, File int64 }

func readPss(pid int) (pss, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return pss{}, err
	}
	return parsePss(b)
}

// parsePss reads the Pss, Pss_Anon and Pss_File lines of smaps_rollup.
func parsePss(b []byte) (pss, error) {
	var p pss
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		key, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "Pss":
			dst, found = &p.Total, true
		case "Pss_Anon":
			dst = &p.Anon
		case "Pss_File":
			dst = &p.File
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return pss{}, fmt.Errorf("smaps_rollup %s: %w", key, err)
		}
		*dst = n
	}
	if !found {
		return pss{}, fmt.Errorf("no Pss line in smaps_rollup")
	}
	return p, nil
}

// threads is the Threads: line of /proc/<pid>/status (0 if unreadable).
func threads(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// programName is the base name of argv[0] of a NUL-separated command line.
// The kernel's comm is useless here: it is cut to 15 bytes
// ("containerd-shim").
func programName(cmdline []byte) string {
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return filepath.Base(string(argv0))
}

// perPodProcesses lists the PIDs of the selector's per-pod processes.
func (s procSelector) perPodProcesses() ([]int, error) {
	if s.Name == "" {
		return nil, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == s.DaemonPID {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 || programName(cmdline) != s.Name {
			continue
		}
		if s.Match != "" && !bytes.Contains(cmdline, []byte(s.Match)) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// sample measures the runtime's memory now. A process that exits while it
// is read is skipped; a daemon that cannot be read is an error.
func (s procSelector) sample() (MemorySample, error) {
	if s.DaemonPID == 0 {
		return MemorySample{}, nil
	}
	d, err := readPss(s.DaemonPID)
	if err != nil {
		return MemorySample{}, fmt.Errorf("daemon %d: %w", s.DaemonPID, err)
	}
	m := MemorySample{DaemonKB: d.Total, DaemonAnonKB: d.Anon, DaemonFileKB: d.File,
		DaemonThreads: threads(s.DaemonPID), Measured: true}
	pids, err := s.perPodProcesses()
	if err != nil {
		return MemorySample{}, err
	}
	for _, pid := range pids {
		p, err := readPss(pid)
		if err != nil {
			continue
		}
		m.PerPodProcesses++
		m.PerPodKB += p.Total
		m.PerPodAnonKB += p.Anon
	}
	return m, nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
