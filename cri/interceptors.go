package cri

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerOptions returns the interceptors every CRI RPC passes through, outer
// first: logging (sees the final code), panic recovery, then error mapping.
func ServerOptions(log *slog.Logger) []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{logUnary(log), recoverUnary(log), mapErrorsUnary}
	stream := []grpc.StreamServerInterceptor{logStream(log), recoverStream(log), mapErrorsStream}
	unary = append(unary, testHookUnary()...)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
}

func mapErrorsUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, toStatus(err)
}

func mapErrorsStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return toStatus(handler(srv, ss))
}

// recovered turns a panic in a handler into codes.Internal and logs its stack,
// so one bad request never takes the node's runtime down.
func recovered(ctx context.Context, log *slog.Logger, method string, p any) error {
	log.ErrorContext(ctx, "panic in CRI handler; the daemon keeps serving", "method", path.Base(method), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "berth: internal error in %s (%v); the daemon keeps running; please report this with the daemon log", path.Base(method), p)
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, recovered(ctx, log, info.FullMethod, p)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = recovered(ss.Context(), log, info.FullMethod, p)
			}
		}()
		return handler(srv, ss)
	}
}

// logUnary logs every RPC with its method, the pod and container IDs it
// concerns, its duration and outcome. Successes log at debug (kubelet polls
// List and Status every few seconds), failures at warn.
func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logRPC(ctx, log, info.FullMethod, requestAttrs(req), time.Since(start), err)
		return resp, err
	}
}

func logStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logRPC(ss.Context(), log, info.FullMethod, nil, time.Since(start), err)
		return err
	}
}

func logRPC(ctx context.Context, log *slog.Logger, method string, attrs []slog.Attr, took time.Duration, err error) {
	attrs = append([]slog.Attr{slog.String("method", path.Base(method))}, attrs...)
	attrs = append(attrs, slog.Duration("duration", took))
	level := slog.LevelDebug
	if err != nil {
		level = slog.LevelWarn
		st, _ := status.FromError(err)
		attrs = append(attrs, slog.String("code", st.Code().String()), slog.String("error", st.Message()))
	}
	log.LogAttrs(ctx, level, "CRI request", attrs...)
}

// requestAttrs picks the IDs out of a CRI request. The getters are the ones
// protoc generates, so every request that carries an ID is covered.
func requestAttrs(req any) []slog.Attr {
	var attrs []slog.Attr
	if r, ok := req.(interface{ GetPodSandboxId() string }); ok && r.GetPodSandboxId() != "" {
		attrs = append(attrs, slog.String("pod_id", r.GetPodSandboxId()))
	}
	if r, ok := req.(interface{ GetContainerId() string }); ok && r.GetContainerId() != "" {
		attrs = append(attrs, slog.String("container_id", r.GetContainerId()))
	}
	return attrs
}
