package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// statusField returns a field of /proc/<pid>/status text.
func statusField(text, field string) string {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Capabilities: containerd's default set, add and drop (also ALL), and the
// full bounding set for privileged containers.
func TestContainerCapabilities(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "caps")
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	hostBounding := statusField(string(self), "CapBnd")
	for _, tc := range []struct {
		name     string
		sc       *runtimeapi.LinuxContainerSecurityContext
		eff, bnd string
	}{
		// CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
		// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
		{"default", nil, "00000000a80425fb", "00000000a80425fb"},
		{"drop-net-raw", &runtimeapi.LinuxContainerSecurityContext{
			Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"NET_RAW"}},
		}, "00000000a80405fb", "00000000a80405fb"},
		{"add-net-admin", &runtimeapi.LinuxContainerSecurityContext{
			Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_NET_ADMIN"}},
		}, "00000000a80435fb", "00000000a80435fb"},
		{"drop-all-add-one", &runtimeapi.LinuxContainerSecurityContext{
			Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"KILL"}},
		}, "0000000000000020", "0000000000000020"},
		{"privileged", &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, hostBounding, hostBounding},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.ctrConfig(tc.name, "cat", "/proc/self/status")
			cfg.Linux.SecurityContext = tc.sc
			_, lines := e.runToExit(t, podID, podCfg, cfg)
			out := output(lines)
			if eff, bnd := statusField(out, "CapEff"), statusField(out, "CapBnd"); eff != tc.eff || bnd != tc.bnd {
				t.Fatalf("CapEff %s CapBnd %s, want %s %s", eff, bnd, tc.eff, tc.bnd)
			}
			if inh := statusField(out, "CapInh"); inh != "0000000000000000" {
				t.Fatalf("CapInh %s, want none", inh)
			}
		})
	}
	t.Run("dropped-capability-is-enforced", func(t *testing.T) {
		cfg := e.ctrConfig("chown", "sh", "-c", "touch /f && chown 1000 /f && echo chowned")
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"CHOWN"}},
		}
		st, lines := e.runToExit(t, podID, podCfg, cfg)
		if st.ExitCode == 0 || strings.Contains(output(lines), "chowned") {
			t.Fatalf("chown without CAP_CHOWN succeeded: %q", output(lines))
		}
	})
}

// Masked and read-only /proc and /sys paths by default; none for a
// privileged container.
func TestContainerMaskedAndReadonlyPaths(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "masked")
	// /proc/timer_list is masked by default (and exists on every kernel
	// with CONFIG_GENERIC_CLOCKEVENTS, unlike /proc/kcore).
	script := `echo timers=$(head -c 16 /proc/timer_list | wc -c); ` +
		`echo procsys=$(grep -c ' /proc/sys ' /proc/mounts); ` +
		`grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1`
	for _, tc := range []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		want string
	}{
		{"default", nil, "timers=0|procsys=1|ro"},
		{"privileged", &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, "timers=16|procsys=0|rw"},
		{"explicit-lists", &runtimeapi.LinuxContainerSecurityContext{
			MaskedPaths: []string{"/proc/timer_list"}, ReadonlyPaths: []string{"/proc/sysrq-trigger"},
		}, "timers=0|procsys=0|ro"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.ctrConfig(tc.name, "sh", "-c", script)
			cfg.Linux.SecurityContext = tc.sc
			_, lines := e.runToExit(t, podID, podCfg, cfg)
			if got := strings.ReplaceAll(strings.TrimSpace(output(lines)), "\n", "|"); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// Seccomp: RuntimeDefault filters (a blocked syscall fails), Unconfined
// does not, and a Localhost profile is loaded from its file.
func TestContainerSeccomp(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "seccomp")
	profile := filepath.Join(t.TempDir(), "no-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `grep Seccomp: /proc/self/status | cut -f2; if unshare -U true 2>/dev/null; then echo userns=yes; else echo userns=no; fi; ` +
		`if mkdir /tmp/d 2>/dev/null; then echo mkdir=yes; else echo mkdir=no; fi`
	for _, tc := range []struct {
		name string
		p    *runtimeapi.SecurityProfile
		want string
	}{
		{"runtime-default", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, "2|userns=no|mkdir=yes"},
		{"unconfined", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, "0|userns=yes|mkdir=yes"},
		{"localhost", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}, "2|userns=yes|mkdir=no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.ctrConfig(tc.name, "sh", "-c", script)
			cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Seccomp: tc.p}
			_, lines := e.runToExit(t, podID, podCfg, cfg)
			if got := strings.ReplaceAll(strings.TrimSpace(output(lines)), "\n", "|"); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("missing-localhost-profile", func(t *testing.T) {
		cfg := e.ctrConfig("missing", "true")
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
			ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/no/such/profile.json",
		}}
		if _, err := e.tryCreate(podID, podCfg, cfg); err == nil || !strings.Contains(err.Error(), "/no/such/profile.json") {
			t.Fatalf("missing profile: %v, want an error naming it", err)
		}
	})
}

// no_new_privs and a read-only rootfs are applied.
func TestContainerNoNewPrivsAndReadonlyRootfs(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "nnp")
	cfg := e.ctrConfig("nnp", "sh", "-c", `grep NoNewPrivs /proc/self/status | cut -f2; if touch /x 2>/dev/null; then echo rw; else echo ro; fi`)
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NoNewPrivs: true, ReadonlyRootfs: true}
	_, lines := e.runToExit(t, podID, podCfg, cfg)
	if got := strings.ReplaceAll(strings.TrimSpace(output(lines)), "\n", "|"); got != "1|ro" {
		t.Fatalf("got %q, want no_new_privs and a read-only rootfs", got)
	}
}
