package cri

// The streaming server behind Exec, Attach and PortForward: the RPCs hand
// out single-use URLs (k8s.io/cri-streaming keeps the request behind a
// token that expires after a minute); kubelet proxies the client's SPDY or
// WebSocket connection to them, and the server calls back into
// streamRuntime, which does the work through sandbox/.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/berth-runtime/berth/sandbox"
	streaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// streamServer serves the streaming URLs.
type streamServer struct {
	streaming.Server
	http     *http.Server
	listener net.Listener
	served   chan struct{}
}

// newStreamServer listens on the configured address at once, so that the
// URLs it hands out carry the real port even when port 0 was asked for.
func newStreamServer(cfg config.StreamingConfig, rt streaming.Runtime, log *slog.Logger) (*streamServer, error) {
	l, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("streaming server: listen on %s (streaming.address): %w", cfg.Address, err)
	}
	scfg := streaming.DefaultConfig
	scfg.Addr = l.Addr().String()
	scfg.StreamIdleTimeout = cfg.IdleTimeout.Std()
	scheme := "http"
	if cfg.EnableTLS {
		if scfg.TLSConfig, err = streamingTLS(cfg, l.Addr()); err != nil {
			_ = l.Close()
			return nil, err
		}
		scheme = "https"
	}
	scfg.BaseURL = &url.URL{Scheme: scheme, Host: l.Addr().String()}
	srv, err := streaming.NewServer(scfg, rt)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	s := &streamServer{
		Server:   srv,
		listener: l,
		served:   make(chan struct{}),
		http: &http.Server{
			Handler:           srv,
			TLSConfig:         scfg.TLSConfig,
			ReadHeaderTimeout: 30 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	go func() {
		defer close(s.served)
		var err error
		if scfg.TLSConfig != nil {
			err = s.http.ServeTLS(l, "", "")
		} else {
			err = s.http.Serve(l)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("streaming server stopped", "error", err)
		}
	}()
	log.Info("streaming server listening", "url", scfg.BaseURL.String())
	return s, nil
}

// Close stops the server and ends the streams in progress.
func (s *streamServer) Close() error {
	err := s.http.Close()
	<-s.served
	return err
}

// streamingTLS loads the configured certificate or makes a self-signed one
// for the listening address.
func streamingTLS(cfg config.StreamingConfig, addr net.Addr) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if cfg.TLSCertFile != "" {
		cert, err = tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("streaming server: load streaming.tls_cert_file and tls_key_file: %w", err)
		}
	} else if cert, err = selfSignedCert(addr); err != nil {
		return nil, fmt.Errorf("streaming server: make a self-signed certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// selfSignedCert makes a certificate for addr's IP, the loopback addresses
// and the host name, valid for a year.
func selfSignedCert(addr net.Addr) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"berth"}, CommonName: "berth streaming server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && !ta.IP.IsLoopback() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ta.IP)
	}
	if h, err := os.Hostname(); err == nil && h != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// streamRuntime does what the streaming server is asked for.
type streamRuntime struct {
	sandboxes *sandbox.Manager
}

var _ streaming.Runtime = streamRuntime{}

// Exec runs cmd in the container with the client's streams. A non-zero
// exit status is reported as utilexec.ExitError, which the server turns
// into the exit code kubectl shows.
func (r streamRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	opts := sandbox.ExecOptions{Cmd: cmd, TTY: tty, Resize: terminalSizes(ctx, resize)}
	// The server passes absent streams as nil interfaces; keep them nil.
	if in != nil {
		opts.Stdin = in
	}
	if out != nil {
		opts.Stdout = out
	}
	if errOut != nil {
		opts.Stderr = errOut
	}
	code, err := r.sandboxes.ExecContainer(ctx, containerID, opts)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// Attach joins the client's streams to the container's main process.
func (r streamRuntime) Attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	opts := sandbox.AttachOptions{Resize: terminalSizes(ctx, resize)}
	if in != nil {
		opts.Stdin = in
	}
	if out != nil {
		opts.Stdout = out
	}
	if errOut != nil {
		opts.Stderr = errOut
	}
	return r.sandboxes.AttachContainer(ctx, containerID, opts)
}

// PortForward joins the stream to port on the pod's localhost.
func (r streamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	return r.sandboxes.PortForward(ctx, podSandboxID, port, stream)
}

// terminalSizes translates the server's resize events until it closes
// them or ctx ends.
func terminalSizes(ctx context.Context, in <-chan remotecommand.TerminalSize) <-chan sandbox.TerminalSize {
	if in == nil {
		return nil
	}
	out := make(chan sandbox.TerminalSize)
	go func() {
		defer close(out)
		for {
			var sz remotecommand.TerminalSize
			var ok bool
			select {
			case <-ctx.Done():
				return
			case sz, ok = <-in:
				if !ok {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case out <- sandbox.TerminalSize{Width: sz.Width, Height: sz.Height}:
			}
		}
	}()
	return out
}
