package ocispec

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// The error classes Generate returns; each message names the field or
// value at fault and what to do about it.

func invalidf(format string, a ...any) error {
	return classed(errdefs.ErrInvalidArgument, format, a...)
}

func notFoundf(format string, a ...any) error {
	return classed(errdefs.ErrNotFound, format, a...)
}

func preconditionf(format string, a ...any) error {
	return classed(errdefs.ErrFailedPrecondition, format, a...)
}

func notImplementedf(format string, a ...any) error {
	return classed(errdefs.ErrNotImplemented, format, a...)
}

func classed(class error, format string, a ...any) error {
	return fmt.Errorf("%w: %s", class, fmt.Sprintf(format, a...))
}
