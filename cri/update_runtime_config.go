package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateRuntimeConfig stores the node's pod CIDRs (comma-separated, one per
// IP family) durably before it returns; pod networking hands them to CNI.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidrs := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if err := s.podCIDRs.Set(ctx, cidrs); err != nil {
		return nil, err
	}
	if cidrs != "" {
		s.log.InfoContext(ctx, "pod CIDRs updated", "pod_cidrs", s.podCIDRs.Get())
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
