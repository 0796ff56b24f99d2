package cri_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berth-runtime/berth/cri"
	"github.com/berth-runtime/berth/internal/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// syncBuffer is a log sink that the gRPC server goroutines and the test can share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a cri.Server behind real gRPC (in memory), with its log.
type testServer struct {
	cfg  config.Config
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
	log  *syncBuffer
	srv  *cri.Server
	// shutdown stops serving and closes the server's stores, as a daemon
	// exit does (also run at cleanup).
	shutdown func()
}

func testConfig(t *testing.T) config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Root = filepath.Join(dir, "root")
	cfg.State = filepath.Join(dir, "state")
	cfg.CNI.ConfDir = filepath.Join(dir, "net.d")
	// Any executable will do as the monitor for tests that start no
	// containers (those live in conformance/): Status checks it exists.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Runtime.MonitorPath = self
	cfg.CNI.BinDirs = []string{filepath.Join(dir, "cni-bin")}
	for _, d := range []string{cfg.Root, cfg.State} { // the daemon creates and locks them
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// startServer serves srvFor's service (the real cri.Server unless the test
// wraps it) with berth's interceptors, and connects a client.
func startServer(t *testing.T, cfg config.Config, register func(*grpc.Server, *cri.Server)) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := cri.New(context.Background(), cfg, log, cri.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(cri.ServerOptions(log)...)
	if register == nil {
		srv.Register(g)
	} else {
		register(g, srv)
	}
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			g.Stop()
			srv.Close()
		})
	}
	t.Cleanup(shutdown)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &testServer{cfg: cfg, conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn), log: logs, srv: srv, shutdown: shutdown}
}
