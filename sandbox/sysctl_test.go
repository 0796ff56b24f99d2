package sandbox

import (
	"maps"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSplitSysctlsClassifies(t *testing.T) {
	for _, tc := range []struct {
		in       string
		wantName string
		ipc      bool
	}{
		{"net.ipv4.ip_forward", "net.ipv4.ip_forward", false},
		{"net/ipv4/ip_forward", "net.ipv4.ip_forward", false},
		{"net.ipv4.ip_local_port_range", "net.ipv4.ip_local_port_range", false},
		// A dot inside a component (VLAN interface eth0.100) in both forms.
		{"net/ipv4/conf/eth0.100/forwarding", "net.ipv4.conf.eth0/100.forwarding", false},
		{"net.ipv4.conf.eth0/100.forwarding", "net.ipv4.conf.eth0/100.forwarding", false},
		{"kernel.shmmax", "kernel.shmmax", true},
		{"kernel.shmall", "kernel.shmall", true},
		{"kernel.shmmni", "kernel.shmmni", true},
		{"kernel.shm_rmid_forced", "kernel.shm_rmid_forced", true},
		{"kernel.msgmax", "kernel.msgmax", true},
		{"kernel.msgmnb", "kernel.msgmnb", true},
		{"kernel.msgmni", "kernel.msgmni", true},
		{"kernel.sem", "kernel.sem", true},
		{"kernel/sem", "kernel.sem", true},
		{"fs.mqueue.msg_max", "fs.mqueue.msg_max", true},
		{"fs/mqueue/queues_max", "fs.mqueue.queues_max", true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			net, ipc, err := SplitSysctls(map[string]string{tc.in: "1"}, false, false)
			if err != nil {
				t.Fatal(err)
			}
			got, other := net, ipc
			if tc.ipc {
				got, other = ipc, net
			}
			if len(other) != 0 || !maps.Equal(got, map[string]string{tc.wantName: "1"}) {
				t.Fatalf("net %v, ipc %v; want %q in the %s map only", net, ipc, tc.wantName, map[bool]string{true: "ipc", false: "net"}[tc.ipc])
			}
		})
	}
}

func TestSplitSysctlsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		sysctls              map[string]string
		hostNetwork, hostIPC bool
		wantMsg              string
	}{
		{"hostname", map[string]string{"kernel.hostname": "x"}, false, false, "hostname comes from"},
		{"domainname", map[string]string{"kernel.domainname": "x"}, false, false, "hostname comes from"},
		{"vm", map[string]string{"vm.swappiness": "10"}, false, false, "not namespaced"},
		{"other kernel", map[string]string{"kernel.pid_max": "100000"}, false, false, "not namespaced"},
		{"kernel.sem lookalike", map[string]string{"kernel.semaphores": "1"}, false, false, "not namespaced"},
		{"other fs", map[string]string{"fs.file-max": "1"}, false, false, "not namespaced"},
		{"fs.mqueue itself", map[string]string{"fs.mqueue": "1"}, false, false, "not namespaced"},
		{"net on host network", map[string]string{"net.ipv4.ip_forward": "1"}, true, false, "would change the host"},
		{"ipc on host IPC", map[string]string{"kernel.shmmni": "1"}, false, true, "would change the host"},
		{"mqueue on host IPC", map[string]string{"fs/mqueue/msg_max": "1"}, false, true, "would change the host"},
		{"empty name", map[string]string{"": "1"}, false, false, "empty"},
		{"empty component", map[string]string{"net..ipv4.ip_forward": "1"}, false, false, "empty component"},
		{"leading dot", map[string]string{".net.ipv4.ip_forward": "1"}, false, false, "empty component"},
		{"trailing dot", map[string]string{"net.ipv4.ip_forward.": "1"}, false, false, "empty component"},
		{"slash form dotdot", map[string]string{"net/ipv4/../../kernel/x": "1"}, false, false, "leave /proc/sys"},
		{"dot form dotdot", map[string]string{"net.ipv4.//.//.kernel.x": "1"}, false, false, "leave /proc/sys"},
		{"space in name", map[string]string{"net.ipv4.ip forward": "1"}, false, false, "spaces"},
		{"newline in value", map[string]string{"net.ipv4.ip_forward": "1\nkernel.x=1"}, false, false, "newline"},
		{"NUL in value", map[string]string{"kernel.shmmni": "1\x00"}, false, false, "newline or NUL"},
		{"two spellings disagree", map[string]string{"net.ipv4.ip_forward": "1", "net/ipv4/ip_forward": "0"}, false, false, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net, ipc, err := SplitSysctls(tc.sysctls, tc.hostNetwork, tc.hostIPC)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("got net %v, ipc %v, err %v; want InvalidArgument", net, ipc, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tc.wantMsg)
			}
			if len(tc.sysctls) == 1 {
				for k := range tc.sysctls {
					if !strings.Contains(err.Error(), k) {
						t.Fatalf("error %q does not name the sysctl %q", err, k)
					}
				}
			}
		})
	}
}

func TestSplitSysctlsMixed(t *testing.T) {
	in := map[string]string{
		"net.ipv4.ip_forward":    "1",
		"net/ipv4/ip_forward":    "1", // the same sysctl, the same value: fine
		"kernel.shm_rmid_forced": "1",
		"kernel.sem":             "250 32000 32 128",
	}
	net, ipc, err := SplitSysctls(in, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"net.ipv4.ip_forward": "1"}; !maps.Equal(net, want) {
		t.Errorf("net = %v, want %v", net, want)
	}
	if want := map[string]string{"kernel.shm_rmid_forced": "1", "kernel.sem": "250 32000 32 128"}; !maps.Equal(ipc, want) {
		t.Errorf("ipc = %v, want %v", ipc, want)
	}

	// Host network refuses only the net ones, host IPC only the IPC ones.
	if _, ipc, err := SplitSysctls(map[string]string{"kernel.sem": "1 2 3 4"}, true, false); err != nil || len(ipc) != 1 {
		t.Errorf("IPC sysctl on a host-network pod: ipc %v, err %v", ipc, err)
	}
	if net, _, err := SplitSysctls(map[string]string{"net.core.somaxconn": "1024"}, false, true); err != nil || len(net) != 1 {
		t.Errorf("net sysctl on a host-IPC pod: net %v, err %v", net, err)
	}
	if net, ipc, err := SplitSysctls(nil, true, true); err != nil || net != nil || ipc != nil {
		t.Errorf("no sysctls: net %v, ipc %v, err %v", net, ipc, err)
	}
}

func TestSysctlPath(t *testing.T) {
	for name, want := range map[string]string{
		"kernel.shmmni":                     "/proc/sys/kernel/shmmni",
		"fs.mqueue.msg_max":                 "/proc/sys/fs/mqueue/msg_max",
		"net.ipv4.conf.eth0/100.forwarding": "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
	} {
		if got := sysctlPath(name); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", name, got, want)
		}
	}
}
