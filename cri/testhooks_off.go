//go:build !berth_testhooks

package cri

import "google.golang.org/grpc"

// testHookUnary adds nothing in production builds; see testhooks_on.go.
func testHookUnary() []grpc.UnaryServerInterceptor { return nil }
