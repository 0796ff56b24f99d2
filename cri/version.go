package cri

import (
	"context"

	"github.com/berth-runtime/berth/internal/version"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeRuntimeAPIVersion is the legacy "version" field every CRI runtime
// reports as 0.1.0; kubelet ignores it but crictl prints it.
const kubeRuntimeAPIVersion = "0.1.0"

// Version returns the runtime name, its build version and the CRI API version.
func (s *Server) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeRuntimeAPIVersion,
		RuntimeName:       version.RuntimeName,
		RuntimeVersion:    version.Berth(),
		RuntimeApiVersion: version.CRIAPIVersion,
	}, nil
}
