//go:build berth_testhooks

package cri

import (
	"context"
	"path"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// PanicHookKey is request metadata that, in binaries built with the
// berth_testhooks tag only, makes the named RPC's handler panic. Tests use it
// to prove that a panicking handler leaves the daemon serving.
const PanicHookKey = "berth-test-panic"

// testHookUnary sits inside the recovery interceptor, so its panic is a
// handler panic as far as the daemon is concerned.
func testHookUnary() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		for _, rpc := range md.Get(PanicHookKey) {
			if rpc == path.Base(info.FullMethod) {
				panic("injected by test hook " + PanicHookKey)
			}
		}
		return handler(ctx, req)
	}}
}
