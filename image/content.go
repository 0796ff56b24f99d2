package image

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd/v2/core/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readJSON reads a small blob (manifest, config) and decodes it.
func readJSON[T any](ctx context.Context, p content.Provider, desc ocispec.Descriptor) (T, error) {
	var v T
	b, err := content.ReadBlob(ctx, p, desc)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode %s: %w", desc.Digest, err)
	}
	return v, nil
}
