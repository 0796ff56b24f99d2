package network

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSetupTeardown is one pod's network life on the bridge network:
// pin a namespace, bring up lo, CNI ADD, CNI DEL, unpin. It also reports
// the median Setup and Teardown alone, without and with a host port (the
// portmap plugin and its iptables work).
func BenchmarkSetupTeardown(b *testing.B) {
	for _, hostPort := range []bool{false, true} {
		b.Run("hostport="+strconv.FormatBool(hostPort), func(b *testing.B) {
			n := newTestNet(b, netOptions{})
			n.mgr = NewManager(ManagerOptions{ConfDir: n.confDir, BinDirs: []string{n.binDir}, CacheDir: n.cacheDir, Log: slog.New(slog.DiscardHandler)})
			ctx := context.Background()
			dir := b.TempDir()
			var setups, teardowns []time.Duration
			port := int32(freeHostPort(b))
			for i := 0; b.Loop(); i++ {
				pin := filepath.Join(dir, "netns-"+strconv.Itoa(i))
				if err := CreateNetNS(pin); err != nil {
					b.Fatal(err)
				}
				if err := BringUpLoopback(pin); err != nil {
					b.Fatal(err)
				}
				a := Attachment{PodID: "bench" + strconv.Itoa(i), PodName: "bench", PodNamespace: "default", NetNSPath: pin}
				if hostPort {
					a.PortMappings = []PortMapping{{HostPort: port, ContainerPort: 80}}
				}
				t0 := time.Now()
				if _, err := n.mgr.Setup(ctx, a); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := n.mgr.Teardown(ctx, a); err != nil {
					b.Fatal(err)
				}
				teardowns = append(teardowns, time.Since(t1))
				setups = append(setups, t1.Sub(t0))
				if err := RemoveNetNS(pin); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(median(setups).Seconds()*1e3, "setup-p50-ms")
			b.ReportMetric(median(teardowns).Seconds()*1e3, "teardown-p50-ms")
		})
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
