package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
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
		{fmt.Errorf("write record: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), codes.ResourceExhausted},
		{fmt.Errorf("write layer: %w", syscall.EDQUOT), codes.ResourceExhausted},
	}
	for _, tc := range cases {
		got := toStatus(tc.err)
		st, ok := status.FromError(got)
		if !ok || st.Code() != tc.want {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, got, tc.want)
			continue
		}
		// The message is the error's; a full disk also says what to do.
		if !strings.HasPrefix(st.Message(), tc.err.Error()) && tc.want != codes.Aborted {
			t.Errorf("message changed: %q -> %q", tc.err.Error(), st.Message())
		}
		if tc.want == codes.ResourceExhausted && strings.Contains(tc.err.Error(), "write") && !strings.Contains(st.Message(), "free space and retry") {
			t.Errorf("a full disk's message %q does not say what to do", st.Message())
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}
