package e2e

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The kubelet leaves some things on the host whatever its flags say: these
// are put back as they were once it has stopped.

// kubeletChains are the iptables chains the kubelet makes (in both
// families): its canary, the hint for kube-proxy's iptables mode, and
// KUBE-FIREWALL, whose rule (jumped to from INPUT and OUTPUT) drops
// non-loopback traffic to 127.0.0.0/8.
type tableChain struct{ table, chain string }

func kubeletChains() []tableChain {
	return []tableChain{
		{"mangle", "KUBE-KUBELET-CANARY"}, {"nat", "KUBE-KUBELET-CANARY"}, {"filter", "KUBE-KUBELET-CANARY"},
		{"mangle", "KUBE-IPTABLES-HINT"}, {"filter", "KUBE-FIREWALL"},
	}
}

// kubeletHostDirs are paths the kubelet creates outside its root dir: the
// device plugin directory is compiled in, and the legacy log symlink
// directory too. Listed deepest first.
func kubeletHostDirs() []string {
	return []string{deviceManagerDir, "/var/lib/kubelet", "/var/log/containers"}
}

// deviceManagerDir holds the kubelet's device plugin socket.
const deviceManagerDir = "/var/lib/kubelet/device-plugins"

// hostState is what existed before the kubelet started.
type hostState struct {
	chains map[string]bool // "iptables filter KUBE-FIREWALL"
	dirs   map[string]bool
}

// snapshotHost records which of the kubelet's chains and directories exist.
func snapshotHost() hostState {
	s := hostState{chains: map[string]bool{}, dirs: map[string]bool{}}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, c := range kubeletChains() {
			s.chains[ipt+" "+c.table+" "+c.chain] = exec.Command(ipt, "-w", "-t", c.table, "-S", c.chain).Run() == nil
		}
	}
	for _, d := range kubeletHostDirs() {
		_, err := os.Lstat(d)
		s.dirs[d] = err == nil
	}
	return s
}

// restoreHost removes the chains and directories that did not exist at
// snapshot time. A directory with something left in it is reported, not
// removed (only the device plugin directory, holding the kubelet's socket,
// is removed whole).
func restoreHost(tb testing.TB, before hostState) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, c := range kubeletChains() {
			if !before.chains[ipt+" "+c.table+" "+c.chain] {
				if err := removeChain(ipt, c.table, c.chain); err != nil {
					tb.Errorf("remove %s -t %s chain %s: %v", ipt, c.table, c.chain, err)
				}
			}
		}
	}
	for _, d := range kubeletHostDirs() {
		if before.dirs[d] {
			continue
		}
		var err error
		if d == deviceManagerDir {
			err = os.RemoveAll(d)
		} else {
			err = os.Remove(d)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			tb.Errorf("remove %s (the kubelet made it): %v", d, err)
		}
	}
}

// removeChain deletes the rules that jump to chain, then the chain. A chain
// that does not exist is fine.
func removeChain(ipt, table, chain string) error {
	if exec.Command(ipt, "-w", "-t", table, "-S", chain).Run() != nil {
		return nil
	}
	out, err := exec.Command(ipt, "-w", "-t", table, "-S").Output()
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || f[1] == chain || !jumpsTo(f, chain) {
			continue
		}
		// -S prints rules as they are typed; quoted comments come back
		// with their quotes, so go through the shell-less form carefully.
		args := append([]string{"-w", "-t", table, "-D"}, unquoteArgs(f[1:])...)
		if out, err := exec.Command(ipt, args...).CombinedOutput(); err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
	}
	for _, op := range []string{"-F", "-X"} {
		if out, err := exec.Command(ipt, "-w", "-t", table, op, chain).CombinedOutput(); err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// jumpsTo reports whether a rule's fields contain "-j chain".
func jumpsTo(f []string, chain string) bool {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" && f[i+1] == chain {
			return true
		}
	}
	return false
}

// unquoteArgs joins the double-quoted words iptables -S prints for a
// comment ("block incoming localnet connections") back into one argument.
func unquoteArgs(f []string) []string {
	var out []string
	for i := 0; i < len(f); i++ {
		if !strings.HasPrefix(f[i], `"`) {
			out = append(out, f[i])
			continue
		}
		word := f[i]
		for !strings.HasSuffix(word, `"`) || len(word) == 1 {
			if i+1 >= len(f) {
				break
			}
			i++
			word += " " + f[i]
		}
		out = append(out, strings.Trim(word, `"`))
	}
	return out
}
