package main

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

// blockingHealth answers Check only when release is closed, standing in for a
// slow in-flight RPC.
type blockingHealth struct {
	*health.Server
	entered chan struct{}
	release chan struct{}
}

func (b *blockingHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.Server.Check(ctx, req)
}

func startBlocking(t *testing.T) (*grpc.Server, *blockingHealth, chan error) {
	t.Helper()
	g := grpc.NewServer()
	b := &blockingHealth{Server: health.NewServer(), entered: make(chan struct{}), release: make(chan struct{})}
	healthpb.RegisterHealthServer(g, b)
	lis := bufconn.Listen(1 << 16)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///x",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	result := make(chan error, 1)
	go func() {
		_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		result <- err
	}()
	<-b.entered
	return g, b, result
}

func TestGracefulStopLetsInFlightRPCFinish(t *testing.T) {
	g, b, result := startBlocking(t)
	stopped := make(chan struct{})
	go func() {
		gracefulStop(g, time.Minute, slog.New(slog.DiscardHandler))
		close(stopped)
	}()
	close(b.release)
	if err := <-result; err != nil {
		t.Fatalf("in-flight RPC cut off by a graceful stop: %v", err)
	}
	<-stopped
}

func TestGracefulStopIsBounded(t *testing.T) {
	g, _, result := startBlocking(t)
	// The handler never finishes on its own: the stop must cut it off.
	gracefulStop(g, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	if err := <-result; err == nil {
		t.Fatal("RPC that outlived the shutdown timeout succeeded")
	}
}
