package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

func TestClassifyPullError(t *testing.T) {
	dial := &url.Error{Op: "Head", URL: "https://r.example/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	cases := []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"disk full", fmt.Errorf("write blob: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), errdefs.IsResourceExhausted},
		{"bad credentials", fmt.Errorf("authorize: %w", docker.ErrInvalidAuthorization), errdefs.IsUnauthorized},
		{"401", remoteerrors.ErrUnexpectedStatus{StatusCode: 401, Status: "401 Unauthorized"}, errdefs.IsUnauthorized},
		{"403", remoteerrors.ErrUnexpectedStatus{StatusCode: 403, Status: "403 Forbidden"}, errdefs.IsPermissionDenied},
		{"404", remoteerrors.ErrUnexpectedStatus{StatusCode: 404, Status: "404 Not Found"}, errdefs.IsNotFound},
		{"503", remoteerrors.ErrUnexpectedStatus{StatusCode: 503, Status: "503"}, errdefs.IsUnavailable},
		{"429", remoteerrors.ErrUnexpectedStatus{StatusCode: 429, Status: "429"}, errdefs.IsUnavailable},
		{"digest mismatch", fmt.Errorf("unexpected commit digest sha256:aa, expected sha256:bb: %w", errdefs.ErrFailedPrecondition), errdefs.IsDataLoss},
		{"manifest not found", fmt.Errorf("ref: %w", errdefs.ErrNotFound), errdefs.IsNotFound},
		{"connection refused", dial, errdefs.IsUnavailable},
		{"dns", &url.Error{Op: "Get", URL: "u", Err: &net.DNSError{Err: "no such host", Name: "r.example"}}, errdefs.IsUnavailable},
		{"download cut off", fmt.Errorf("copy: %w", io.ErrUnexpectedEOF), errdefs.IsUnavailable},
		{"corrupt layer", errors.New("failed to extract layer (sha256:x): gzip: invalid header"), errdefs.IsDataLoss},
		{"unextractable layer", fmt.Errorf("failed to extract layer (sha256:x): link a b: %w", syscall.ENOENT), errdefs.IsInvalidArgument},
		{"stalled", &errStalled{ref: "r", timeout: 1}, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	}
	for _, tc := range cases {
		got := classifyPullError("registry.example/app:1", tc.err)
		if !tc.is(got) {
			t.Errorf("%s: classified as %v", tc.name, got)
		}
	}
	// A filesystem errno is not a network error, although syscall.Errno
	// implements net.Error.
	if got := classifyPullError("x", fmt.Errorf("apply: %w", syscall.EIO)); errdefs.IsUnavailable(got) {
		t.Errorf("EIO classified as unreachable registry: %v", got)
	}
}
