// Package conformance is a CRI test suite that drives a runtime over gRPC the
// way kubelet and crictl do. By default each test starts its own berth; set
// BERTH_CRI_ENDPOINT=unix:///path/to.sock to run it against any CRI runtime.
// Cases that need control of the daemon (its config, its process) skip then.
package conformance
