package sysctl

import "testing"

func TestSwapSeparators(t *testing.T) {
	for in, want := range map[string]string{
		"net.ipv4.ip_forward":               "net/ipv4/ip_forward",
		"net.ipv4.conf.eth0/100.forwarding": "net/ipv4/conf/eth0.100/forwarding",
		"kernel.shm_rmid_forced":            "kernel/shm_rmid_forced",
	} {
		if got := SwapSeparators(in); got != want {
			t.Errorf("SwapSeparators(%q) = %q, want %q", in, got, want)
		}
		if back := SwapSeparators(want); back != in {
			t.Errorf("not its own inverse: %q -> %q", want, back)
		}
	}
}
