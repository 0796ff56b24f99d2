package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStatus reports a container; a missing one is NotFound.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: ContainerStatus needs container_id", errdefs.ErrInvalidArgument)
	}
	c, err := s.sandboxes.GetContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: toContainerStatus(c)}
	if req.GetVerbose() {
		info, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("render container info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func toContainerStatus(c sandbox.Container) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Metadata.Name, Attempt: c.Config.Metadata.Attempt},
		State:       toCRIContainerState(c.State),
		CreatedAt:   c.CreatedAt.UnixNano(),
		Image:       &runtimeapi.ImageSpec{Image: c.Config.Image.Name, UserSpecifiedImage: c.Config.Image.Requested},
		ImageRef:    c.Config.Image.Ref,
		ImageId:     c.Config.Image.ID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Config.Spec.Labels,
		Annotations: c.Config.Spec.Annotations,
		LogPath:     c.LogPath,
		Resources:   toCRIResources(c.Resources, c.Config.Spec.Resources),
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: int64(c.UID), Gid: int64(c.GID), SupplementalGroups: toInt64s(c.AdditionalGIDs),
		}},
		StopSignal: toCRISignal(c.StopSignal),
	}
	if !c.StartedAt.IsZero() {
		st.StartedAt = c.StartedAt.UnixNano()
	}
	if c.State == sandbox.ContainerExited {
		st.FinishedAt = c.FinishedAt.UnixNano()
		st.ExitCode = c.ExitCode
	}
	for _, m := range c.Mounts {
		st.Mounts = append(st.Mounts, toCRIMount(m))
	}
	return st
}

func toInt64s(ids []uint32) []int64 {
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		out = append(out, int64(id))
	}
	return out
}

func toCRIMount(m ocispec.Mount) *runtimeapi.Mount {
	out := &runtimeapi.Mount{
		ContainerPath: m.ContainerPath, HostPath: m.HostPath, Readonly: m.Readonly,
		RecursiveReadOnly: m.RecursiveReadonly, SelinuxRelabel: m.SELinuxRelabel,
		Propagation: runtimeapi.MountPropagation(m.Propagation),
	}
	if m.Image != "" {
		out.Image = &runtimeapi.ImageSpec{Image: m.Image}
		out.ImageSubPath = m.ImageSubPath
	}
	return out
}

// toCRIResources reports the limits in force: those written to the cgroup
// (spec), with the CRI-only fields (oom_score_adj) from the request.
func toCRIResources(r *specs.LinuxResources, asked *ocispec.Resources) *runtimeapi.ContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if r != nil {
		if cpu := r.CPU; cpu != nil {
			if cpu.Shares != nil {
				out.CpuShares = int64(*cpu.Shares)
			}
			if cpu.Quota != nil {
				out.CpuQuota = *cpu.Quota
			}
			if cpu.Period != nil {
				out.CpuPeriod = int64(*cpu.Period)
			}
			out.CpusetCpus, out.CpusetMems = cpu.Cpus, cpu.Mems
		}
		if mem := r.Memory; mem != nil {
			if mem.Limit != nil {
				out.MemoryLimitInBytes = *mem.Limit
			}
			if mem.Swap != nil {
				out.MemorySwapLimitInBytes = *mem.Swap
			}
		}
		for _, h := range r.HugepageLimits {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
		}
		out.Unified = r.Unified
	}
	if asked != nil {
		out.OomScoreAdj = asked.OOMScoreAdj
	}
	return &runtimeapi.ContainerResources{Linux: out}
}

// toCRISignal maps a signal name ("SIGTERM") to the CRI's enum.
func toCRISignal(name string) runtimeapi.Signal {
	if name == "" {
		return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
	}
	name = strings.NewReplacer("SIGRTMIN+", "SIGRTMINPLUS", "SIGRTMAX-", "SIGRTMAXMINUS").Replace(name)
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+name]; ok {
		return runtimeapi.Signal(v)
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
}
