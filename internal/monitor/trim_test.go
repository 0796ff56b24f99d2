package monitor

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestExeRanges(t *testing.T) {
	rs := exeRanges()
	if len(rs) == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Readlink("/proc/self/exe")
	for _, r := range rs {
		found := false
		for _, l := range strings.Split(string(maps), "\n") {
			f := strings.Fields(l)
			if len(f) < 6 || f[5] != exe {
				continue
			}
			a, b, _ := strings.Cut(f[0], "-")
			s, _ := strconv.ParseUint(a, 16, 64)
			e, _ := strconv.ParseUint(b, 16, 64)
			if uintptr(s) == r.start && uintptr(e) == r.end {
				found = !strings.Contains(f[1], "w")
			}
		}
		if !found {
			t.Errorf("range %#x-%#x is not a read-only mapping of %s", r.start, r.end, exe)
		}
	}
	// Trimming is harmless: the code still runs.
	trimExe(rs)
	if got := parseMappingOK("00400000-0055b000 r-xp 00000000 fe:00 9977951    /x"); !got {
		t.Fatal("a mapping line was not parsed")
	}
	if parseMappingOK("Anonymous:            0 kB") {
		t.Fatal("a field line parsed as a mapping")
	}
}

func parseMappingOK(s string) bool { _, ok := parseMapping([]byte(s)); return ok }
