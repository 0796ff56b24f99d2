package cri

import (
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus is the one place where errors become gRPC statuses. sandbox/,
// image/ and network/ return containerd errdefs types (ErrNotFound,
// ErrInvalidArgument, ...) and context errors; an error that already is a
// status passes through; anything untyped is codes.Unknown, which marks a
// place that should have typed its error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	err = errgrpc.ToGRPC(err)
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}
