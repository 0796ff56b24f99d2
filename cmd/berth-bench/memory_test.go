package main

import (
	"os"
	"testing"
)

func TestParsePss(t *testing.T) {
	rollup := []byte(`55d0c0a2b000-7ffd3a5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:               34816 kB
Pss:               31230 kB
Pss_Dirty:         20000 kB
Shared_Clean:       4000 kB
`)
	p, err := parsePss(rollup)
	if err != nil || p != (pss{Total: 31230}) {
		t.Errorf("parsePss = %+v, %v", p, err)
	}
	p, err = parsePss(append(rollup, "Pss_Anon:           9000 kB\nPss_File:          22000 kB\nPss_Shmem:  230 kB\n"...))
	if err != nil || p != (pss{Total: 31230, Anon: 9000, File: 22000}) {
		t.Errorf("parsePss with anon and file = %+v, %v", p, err)
	}
	if _, err := parsePss([]byte("Rss: 1 kB\n")); err == nil {
		t.Error("no Pss line accepted")
	}
}

func TestProgramName(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00": "containerd-shim-runc-v2",
		"berth-monitor\x00--dir\x00/x\x00":                             "berth-monitor",
		"/bin/sleep":                                                   "sleep",
	} {
		if got := programName([]byte(in)); got != want {
			t.Errorf("programName(%q) = %q, want %q", in, got, want)
		}
	}
}

// The bench's own process is found by name and command line, and its PSS
// read.
func TestSampleSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip("no smaps_rollup")
	}
	self, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	sel := procSelector{DaemonPID: os.Getpid(), Name: programName(self), Match: "-test."}
	m, err := sel.sample()
	if err != nil || !m.Measured || m.DaemonKB <= 0 || m.DaemonThreads < 1 {
		t.Fatalf("sample = %+v, %v", m, err)
	}
	// The daemon itself is never one of its per-pod processes.
	pids, err := sel.perPodProcesses()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pid == os.Getpid() {
			t.Error("the daemon counted as a per-pod process")
		}
	}
	if m, err := (procSelector{}).sample(); err != nil || m.Measured {
		t.Errorf("no daemon PID: %+v, %v", m, err)
	}
}
