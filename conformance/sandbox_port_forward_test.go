package conformance

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// webServer runs busybox httpd in a pod, serving body on each address
// (host:port, host may be [::1]), and waits until it answers.
func (e *ctrEnv) webServer(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, body string, addrs ...string) {
	t.Helper()
	script := "mkdir -p /www && echo " + body + " > /www/index.html"
	for _, a := range addrs {
		script += " && httpd -p " + a + " -h /www"
	}
	script += " && exec sleep 3600"
	id := e.run(t, podID, podCfg, e.ctrConfig("web", "sh", "-c", script))
	for _, a := range addrs {
		waitFor(t, func() bool {
			resp, err := e.execSync(t, id, 5, "wget", "-q", "-O-", "http://"+a+"/")
			return err == nil && resp.ExitCode == 0
		})
	}
}

// forwardSPDY forwards a local port to port in the pod as kubectl
// port-forward does, and returns the local address.
func (e *ctrEnv) forwardSPDY(t *testing.T, podID string, port int) string {
	t.Helper()
	resp, err := e.tg.Runtime.PortForward(context.Background(), &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{int32(port)}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward ended before it was ready: %v", err)
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("forwarded ports %v, %v", ports, err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local)
}

func httpGet(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET through the forwarded port: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kubectl port-forward to a pod's server on IPv4 and IPv6 localhost.
func TestPortForwardSPDY(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "pf-spdy")
	e.webServer(t, podID, podCfg, "hello-from-pod", "127.0.0.1:8080", "[::1]:8081")
	for _, port := range []int{8080, 8081} {
		local := e.forwardSPDY(t, podID, port)
		for range 3 { // several connections over one forward
			if got := httpGet(t, local); got != "hello-from-pod\n" {
				t.Fatalf("port %d answered %q", port, got)
			}
		}
	}
	// Nothing listens on 8082: the client's connection is closed with an
	// error, and the forward keeps working for the next one.
	local := e.forwardSPDY(t, podID, 8082)
	if _, err := http.Get("http://" + local + "/"); err == nil {
		t.Fatal("a GET to a port nothing listens on succeeded")
	}
	// A host-network pod forwards in the host's namespace.
	hostPort := freeHostPort(t)
	hostPod, hostCfg := e.pod(t, "pf-host", func(c *runtimeapi.PodSandboxConfig) { hostNetwork(c) })
	e.webServer(t, hostPod, hostCfg, "hello-from-host-pod", fmt.Sprintf("127.0.0.1:%d", hostPort))
	if got := httpGet(t, e.forwardSPDY(t, hostPod, hostPort)); got != "hello-from-host-pod\n" {
		t.Fatalf("host-network pod answered %q", got)
	}
}

// The WebSocket port-forward protocol (v4.channel.k8s.io): per port a data
// and an error channel, each opened by the port number.
func TestPortForwardWebSocket(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "pf-ws")
	e.webServer(t, podID, podCfg, "hello-over-websocket", "127.0.0.1:8080")
	resp, err := e.tg.Runtime.PortForward(context.Background(), &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{8080}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	u := strings.Replace(resp.Url, "http://", "ws://", 1)
	d := websocket.Dialer{Subprotocols: []string{"v4.channel.k8s.io"}}
	conn, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	defer conn.Close()
	for ch := range 2 {
		_, msg, err := conn.ReadMessage()
		if err != nil || len(msg) != 3 || msg[0] != byte(ch) || binary.LittleEndian.Uint16(msg[1:]) != 8080 {
			t.Fatalf("channel %d opened with %v, %v; want its port 8080", ch, msg, err)
		}
	}
	req := "GET / HTTP/1.0\r\nHost: pod\r\n\r\n"
	if err := conn.WriteMessage(websocket.BinaryMessage, append([]byte{0}, req...)); err != nil {
		t.Fatal(err)
	}
	var data, errs strings.Builder
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			break // the server closes once the pod's side ended
		}
		if len(msg) > 0 && msg[0] == 0 {
			data.Write(msg[1:])
		} else if len(msg) > 0 {
			errs.Write(msg[1:])
		}
	}
	if !strings.HasSuffix(data.String(), "hello-over-websocket\n") || errs.Len() != 0 {
		t.Fatalf("websocket forward got data %q, errors %q", data.String(), errs.String())
	}
}

func TestPortForwardErrors(t *testing.T) {
	e := newCtrEnv(t)
	podID, _ := e.pod(t, "pf-errors")
	for name, c := range map[string]struct {
		req  *runtimeapi.PortForwardRequest
		want codes.Code
	}{
		"no pod":   {&runtimeapi.PortForwardRequest{Port: []int32{80}}, codes.InvalidArgument},
		"bad port": {&runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{70000}}, codes.InvalidArgument},
		"missing":  {&runtimeapi.PortForwardRequest{PodSandboxId: "f00dfeed", Port: []int32{80}}, codes.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := e.tg.Runtime.PortForward(context.Background(), c.req); status.Code(err) != c.want {
				t.Fatalf("PortForward = %v, want %v", err, c.want)
			}
		})
	}
	if _, err := e.tg.Runtime.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	_, err := e.tg.Runtime.PortForward(context.Background(), &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{80}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("PortForward to a stopped pod = %v, want FailedPrecondition", err)
	}
}

// freeHostPort is a TCP port nothing listens on right now.
func freeHostPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
