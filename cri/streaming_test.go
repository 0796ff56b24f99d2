package cri

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/berth-runtime/berth/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// The URLs carry the port actually bound, and are served (https with the
// self-signed certificate when asked).
func TestStreamServerURLs(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		cfg := config.Default().Streaming
		cfg.EnableTLS = tlsOn
		s, err := newStreamServer(cfg, streamRuntime{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"true"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		scheme := map[bool]string{false: "http://", true: "https://"}[tlsOn]
		port := s.listener.Addr().(*net.TCPAddr).Port
		if !strings.HasPrefix(resp.Url, scheme+"127.0.0.1:") || strings.Contains(resp.Url, ":0/") || port == 0 {
			t.Fatalf("exec URL %q (listening on port %d)", resp.Url, port)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		// A plain GET is no stream upgrade: refused, but by our server.
		r, err := client.Get(resp.Url)
		if err != nil {
			t.Fatalf("GET %s: %v", resp.Url, err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			t.Fatalf("a plain GET of an exec URL answered 200")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSelfSignedCertCoversLoopback(t *testing.T) {
	cert, err := selfSignedCert(&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "::1", "10.1.2.3", "localhost"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("certificate does not cover %s: %v", host, err)
		}
	}
}

func TestStreamingTLSNeedsReadableFiles(t *testing.T) {
	cfg := config.Default().Streaming
	cfg.EnableTLS, cfg.TLSCertFile, cfg.TLSKeyFile = true, "/nonexistent/cert.pem", "/nonexistent/key.pem"
	if _, err := streamingTLS(cfg, &net.TCPAddr{}); err == nil || !strings.Contains(err.Error(), "tls_cert_file") {
		t.Fatalf("missing certificate files: %v, want an error naming the keys", err)
	}
}

func TestTerminalSizesEndWithTheirSource(t *testing.T) {
	in := make(chan remotecommand.TerminalSize, 2)
	in <- remotecommand.TerminalSize{Width: 100, Height: 40}
	out := terminalSizes(context.Background(), in)
	if got := <-out; got != (sandbox.TerminalSize{Width: 100, Height: 40}) {
		t.Fatalf("translated size %+v", got)
	}
	close(in)
	if _, ok := <-out; ok {
		t.Fatal("the translated channel stayed open after its source closed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	out = terminalSizes(ctx, make(chan remotecommand.TerminalSize))
	cancel()
	if _, ok := <-out; ok {
		t.Fatal("the translated channel stayed open after ctx ended")
	}
	if terminalSizes(ctx, nil) != nil {
		t.Fatal("no resize source must give no channel")
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{limit: 10}
	for _, chunk := range []string{"12345", "67890abc", "def"} {
		if n, err := b.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: a capped write must look complete", chunk, n, err)
		}
	}
	if b.buf.String() != "1234567890" || b.dropped != 6 {
		t.Fatalf("kept %q dropped %d, want 1234567890 and 6", b.buf.String(), b.dropped)
	}
}
