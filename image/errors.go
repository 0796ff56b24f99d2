package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

// classifyPullError gives a failed pull the errdefs type its cause deserves
// (and so the gRPC code kubelet sees), with a message an operator can act on.
func classifyPullError(name string, err error) error {
	var status remoteerrors.ErrUnexpectedStatus
	// Not the net.Error interface: syscall.Errno implements it too, and a
	// filesystem error must not read as "registry unreachable".
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var urlErr *url.Error
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: pull %s: no space left on the image filesystem: free space or remove unused images (%v)", errdefs.ErrResourceExhausted, name, err)
	case errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: pull %s: disk quota exceeded on the image filesystem (%v)", errdefs.ErrResourceExhausted, name, err)
	case errors.Is(err, docker.ErrInvalidAuthorization):
		return fmt.Errorf("%w: pull %s: the registry refused the credentials (%v)", errdefs.ErrUnauthenticated, name, err)
	case errors.As(err, &status):
		return fmt.Errorf("%w: pull %s: %v", statusClass(status.StatusCode), name, err)
	case strings.Contains(msg, "unexpected commit digest") || strings.Contains(msg, "unexpected commit size") ||
		strings.Contains(msg, "wrong diff id"):
		return fmt.Errorf("%w: pull %s: downloaded content does not match its digest (%v); the registry or a proxy corrupted it", errdefs.ErrDataLoss, name, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("pull %s: %w", name, err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("pull %s: image not found in the registry (check the name and tag): %w", name, err)
	case errdefs.IsInvalidArgument(err), errdefs.IsFailedPrecondition(err), errdefs.IsUnauthorized(err),
		errdefs.IsPermissionDenied(err), errdefs.IsNotImplemented(err), errdefs.IsUnavailable(err), errdefs.IsResourceExhausted(err):
		return fmt.Errorf("pull %s: %w", name, err)
	case strings.Contains(msg, "failed to extract layer"):
		if isCorruptLayer(msg) {
			return fmt.Errorf("%w: pull %s: a layer is corrupt or truncated (%v)", errdefs.ErrDataLoss, name, err)
		}
		// The layer arrived intact (its digest matched) but cannot be laid
		// out: a hard link to a file outside the image, for instance.
		return fmt.Errorf("%w: pull %s: the image is invalid: a layer cannot be extracted (%v)", errdefs.ErrInvalidArgument, name, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: pull %s: the download was cut off (%v); retry", errdefs.ErrUnavailable, name, err)
	case errors.As(err, &opErr), errors.As(err, &dnsErr), errors.As(err, &urlErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("%w: pull %s: registry unreachable (%v); check the network or configure a mirror in the registry config dir", errdefs.ErrUnavailable, name, err)
	}
	return fmt.Errorf("pull %s: %w", name, err)
}

func statusClass(code int) error {
	switch {
	case code == http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case code == http.StatusForbidden:
		return errdefs.ErrPermissionDenied
	case code == http.StatusNotFound:
		return errdefs.ErrNotFound
	case code == http.StatusTooManyRequests, code >= 500:
		return errdefs.ErrUnavailable
	case code >= 400:
		return errdefs.ErrInvalidArgument
	}
	return errdefs.ErrUnknown
}

// isCorruptLayer recognises the errors decompressors and the tar reader give
// for damaged data.
func isCorruptLayer(msg string) bool {
	for _, s := range []string{"gzip: invalid", "flate: corrupt", "zstd: ", "archive/tar: invalid", "unexpected EOF", "invalid tar header"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
