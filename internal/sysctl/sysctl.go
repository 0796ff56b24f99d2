// Package sysctl converts between the two spellings of a sysctl name: the
// dotted one kubelet and users write ("net.ipv4.conf.eth0/100.forwarding")
// and the slash one of its file under /proc/sys.
package sysctl

import "strings"

// SwapSeparators turns dots into slashes and slashes into dots: a dot in a
// dotted name separates components, and a slash stands for a dot inside a
// component (an interface "eth0.100"), as runc and kubelet read them. The
// swap is its own inverse.
func SwapSeparators(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, s)
}
