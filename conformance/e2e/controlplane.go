package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ServiceCIDR is the cluster's service range; its first address is the
// kubernetes service, ClusterDNS an address in it nobody serves (no DNS
// add-on runs; pods only get it in their resolv.conf).
const (
	ServiceCIDR = "10.0.0.0/24"
	ClusterDNS  = "10.0.0.10"
)

// ControlPlane is etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on 127.0.0.1.
type ControlPlane struct {
	Etcd, APIServer, ControllerManager, Scheduler *Process

	// Server is the apiserver's URL (https://127.0.0.1:port).
	Server string
	// AdminKubeconfig is a system:masters kubeconfig (kubectl, tests).
	AdminKubeconfig string
	Admin           KeyPair
}

// controlPlaneConfig is what StartControlPlane needs from the cluster.
type controlPlaneConfig struct {
	BinDir string // the Kubernetes binaries
	Dir    string // data, kubeconfigs
	LogDir string
	PKI    *PKI
	// NodeName is the kubelet's node, whose name resolves to 127.0.0.1.
	NodeName string
}

// StartControlPlane starts the control plane and waits until the apiserver
// is ready. The processes stop in tb's cleanup.
func StartControlPlane(tb testing.TB, cfg controlPlaneConfig) *ControlPlane {
	tb.Helper()
	cp := &ControlPlane{}
	var etcdURL string
	cp.Etcd, etcdURL = startEtcd(tb, cfg)

	pki := cfg.PKI
	port := MustFreePort(tb)
	cp.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	serving := mustIssue(tb, pki, CertRequest{
		Name: "apiserver", CN: "kube-apiserver", Server: true,
		DNS: []string{"localhost", cfg.NodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)},
	})
	// system:masters: the kubelet authorizes the apiserver's log, exec and
	// port-forward requests with a SubjectAccessReview.
	kubeletClient := mustIssue(tb, pki, CertRequest{Name: "apiserver-kubelet-client", CN: "kube-apiserver-kubelet-client",
		Orgs: []string{"system:masters"}, Client: true})
	sa, err := pki.ServiceAccountKeys()
	if err != nil {
		tb.Fatal(err)
	}
	cp.Admin = mustIssue(tb, pki, CertRequest{Name: "admin", CN: "e2e-admin", Orgs: []string{"system:masters"}, Client: true})
	cp.AdminKubeconfig = mustKubeconfig(tb, cfg.Dir, "admin", cp.Server, pki, cp.Admin)

	apiDir := filepath.Join(cfg.Dir, "apiserver")
	if err := os.MkdirAll(apiDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	cp.APIServer = StartProcess(tb, "kube-apiserver", cfg.LogDir, filepath.Join(cfg.BinDir, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--cert-dir="+apiDir,
		"--tls-cert-file="+serving.Cert, "--tls-private-key-file="+serving.Key,
		"--client-ca-file="+pki.CAFile,
		"--service-account-key-file="+sa.Cert, "--service-account-signing-key-file="+sa.Key,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-client-certificate="+kubeletClient.Cert, "--kubelet-client-key="+kubeletClient.Key,
		"--kubelet-certificate-authority="+pki.CAFile,
		// The node's InternalIP is eth0's; its Hostname resolves to 127.0.0.1,
		// where the kubelet listens.
		"--kubelet-preferred-address-types=Hostname",
		// The reconciler would publish 127.0.0.1 as the kubernetes service's
		// endpoint, which endpoint validation refuses (loopback).
		"--endpoint-reconciler-type=none",
		"--profiling=false", "--v=1",
	)
	if err := waitHTTPS(tb, cp.APIServer, cp.Server+"/readyz", pki.CAFile, cp.Admin, 2*time.Minute); err != nil {
		tb.Fatalf("kube-apiserver not ready: %v\n--- kube-apiserver log ---\n%s", err, cp.APIServer.Tail(60))
	}

	cmCert := mustIssue(tb, pki, CertRequest{Name: "controller-manager", CN: "system:kube-controller-manager", Client: true})
	cp.ControllerManager = StartProcess(tb, "kube-controller-manager", cfg.LogDir, filepath.Join(cfg.BinDir, "kube-controller-manager"),
		"--kubeconfig="+mustKubeconfig(tb, cfg.Dir, "controller-manager", cp.Server, pki, cmCert),
		"--secure-port=0", "--leader-elect=false",
		"--service-account-private-key-file="+sa.Key, "--root-ca-file="+pki.CAFile,
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range="+ServiceCIDR,
		// Pods get their addresses from berth's CNI network, not from a node
		// podCIDR: no node IPAM.
		"--allocate-node-cidrs=false",
		"--profiling=false", "--v=1",
	)
	schedCert := mustIssue(tb, pki, CertRequest{Name: "scheduler", CN: "system:kube-scheduler", Client: true})
	cp.Scheduler = StartProcess(tb, "kube-scheduler", cfg.LogDir, filepath.Join(cfg.BinDir, "kube-scheduler"),
		"--kubeconfig="+mustKubeconfig(tb, cfg.Dir, "scheduler", cp.Server, pki, schedCert),
		"--secure-port=0", "--leader-elect=false", "--profiling=false", "--v=1",
	)
	return cp
}

// startEtcd starts Debian's etcd on two free ports of 127.0.0.1 and returns
// it with its client URL.
func startEtcd(tb testing.TB, cfg controlPlaneConfig) (*Process, string) {
	tb.Helper()
	bin := "/usr/bin/etcd"
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("etcd: %v (apt-get install etcd-server; make e2e does)", err)
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(MustFreePort(tb))
	peerURL := "http://127.0.0.1:" + strconv.Itoa(MustFreePort(tb))
	p := StartProcess(tb, "etcd", cfg.LogDir, bin,
		"--name=e2e", "--data-dir="+filepath.Join(cfg.Dir, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=e2e="+peerURL, "--initial-cluster-state=new",
		// A test cluster's history is worthless: keep the database small.
		"--auto-compaction-retention=1", "--quota-backend-bytes=1073741824",
		"--unsafe-no-fsync", "--log-level=warn",
	)
	if err := waitHTTP(p, clientURL+"/health", `"health":"true"`, time.Minute); err != nil {
		tb.Fatalf("etcd not healthy: %v\n--- etcd log ---\n%s", err, p.Tail(40))
	}
	return p, clientURL
}

func mustIssue(tb testing.TB, pki *PKI, req CertRequest) KeyPair {
	tb.Helper()
	kp, err := pki.Issue(req)
	if err != nil {
		tb.Fatal(err)
	}
	return kp
}

func mustKubeconfig(tb testing.TB, dir, name, server string, pki *PKI, kp KeyPair) string {
	tb.Helper()
	path := filepath.Join(dir, name+".kubeconfig")
	if err := Kubeconfig(path, server, pki.CAFile, kp); err != nil {
		tb.Fatal(err)
	}
	return path
}

// waitHTTP polls a plain-HTTP health URL until its body contains want.
func waitHTTP(p *Process, url, want string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return pollHealth(p, timeout, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), want), fmt.Sprintf("%s: %s", resp.Status, body)
	})
}

// waitHTTPS polls an apiserver health URL with a client certificate until
// it answers 200.
func waitHTTPS(tb testing.TB, p *Process, url, caFile string, kp KeyPair, timeout time.Duration) error {
	tb.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(kp.Cert, kp.Key)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	defer client.CloseIdleConnections()
	return pollHealth(p, timeout, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s: %s", resp.Status, body)
	})
}

// pollHealth polls check until it succeeds, the process exits or timeout.
func pollHealth(p *Process, timeout time.Duration, check func() (bool, string)) error {
	return Poll(context.Background(), timeout, 250*time.Millisecond, func() (bool, string, error) {
		if done, err := p.Exited(); done {
			return false, "", fmt.Errorf("%s exited: %v", p.Name, err)
		}
		ok, msg := check()
		return ok, msg, nil
	})
}
