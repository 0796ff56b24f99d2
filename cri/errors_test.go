package cri

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToStatus(t *testing.T) {
	cases := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("pod x: %w", errdefs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("bad: %w", errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("name reserved: %w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("not running: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("no IPs: %w", errdefs.ErrResourceExhausted), codes.ResourceExhausted},
		{fmt.Errorf("registry down: %w", errdefs.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("pull stalled: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{fmt.Errorf("client left: %w", context.Canceled), codes.Canceled},
		{status.Error(codes.Aborted, "already a status"), codes.Aborted},
		{errors.New("untyped"), codes.Unknown},
	}
	for _, tc := range cases {
		got := toStatus(tc.err)
		st, ok := status.FromError(got)
		if !ok || st.Code() != tc.want {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, got, tc.want)
			continue
		}
		if st.Message() != tc.err.Error() && tc.want != codes.Aborted {
			t.Errorf("message changed: %q -> %q", tc.err.Error(), st.Message())
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}
