package cri

import (
	"errors"
	"syscall"

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
	if diskFull(err) {
		return status.Error(codes.ResourceExhausted, err.Error()+
			": the node's disk (or quota) where berth keeps images, records and container layers is full: free space and retry")
	}
	err = errgrpc.ToGRPC(err)
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}

// diskFull reports an error caused by a full filesystem or an exhausted
// quota, wherever in the chain the errno is.
func diskFull(err error) bool {
	if _, ok := status.FromError(err); ok {
		return false // already classified
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
