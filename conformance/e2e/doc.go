// Package e2e runs berth under a real Kubernetes node: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and a kubelet whose container
// runtime is a berth daemon of the tests' own, all on 127.0.0.1 of this
// machine, with a throwaway PKI. Scenarios drive the cluster through its API
// (client-go, kubectl; kubeadm for what it asks of a runtime) and check what
// berth did through its CRI socket.
//
// The tests need root, Debian's etcd-server, the CNI plugins (make
// cni-plugins) and the Kubernetes binaries built by build-k8s.sh; `make e2e`
// provides all of them. They run only when BERTH_E2E=1 is set (otherwise
// every test skips and says so):
//
//	BERTH_E2E=1              run at all
//	BERTH_K8S_BIN=DIR        kubelet, kube-apiserver, kube-controller-manager,
//	                         kube-scheduler, kubectl and kubeadm (bin/k8s/<version>)
//	BERTH_CNI_PLUGINS=DIR    CNI plugins (bin/cni)
//	BERTH_BINARY=FILE        the berth under test (default: built from the checkout)
//	BERTH_E2E_KEEP_LOGS=1    keep the components' logs after a passing run too
//
// TestMain brings the cluster up once for all scenarios (a cluster takes
// tens of seconds to come up) and tears it down at the end, leaving no
// process, mount, network namespace, cgroup or kernel setting behind.
// Each scenario removes what it created.
package e2e

import "os"

// Environment variables of the suite (see the package doc).
const (
	GateEnv     = "BERTH_E2E"
	K8sBinEnv   = "BERTH_K8S_BIN"
	KeepLogsEnv = "BERTH_E2E_KEEP_LOGS"
)

// Enabled reports whether the end-to-end suite was asked for.
func Enabled() bool { return os.Getenv(GateEnv) == "1" }
