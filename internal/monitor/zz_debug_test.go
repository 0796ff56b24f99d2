package monitor_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestZZDebugSmaps(t *testing.T) {
	integration(t)
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	p := newPod(t, makeRootfs(t))
	if os.Getenv("ZZ") == "run" {
		p.run("idle", []string{"sleep", "1000"}, ctrOpts{})
	}
	time.Sleep(4 * time.Second)
	pid := p.cmd.Process.Pid
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	var hdr string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			hdr = l
			continue
		}
		if len(f) == 3 && (f[0] == "Anonymous:" || f[0] == "Rss:") && f[1] != "0" {
			t.Logf("%-10s %6s kB  %s", f[0], f[1], hdr)
		}
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	t.Logf("%s", st)
	r, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	t.Logf("%s", r)
	t.Logf("%s", p.monitorLog())
}
