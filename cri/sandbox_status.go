package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStatus reports a sandbox; a missing one is NotFound.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: PodSandboxStatus needs pod_sandbox_id", errdefs.ErrInvalidArgument)
	}
	sb, err := s.sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: toSandboxStatus(sb), Timestamp: time.Now().UnixNano()}
	// The pod's containers come along for kubelet's evented PLEG.
	for _, c := range s.listContainers(sandbox.ContainerFilter{SandboxID: sb.ID}) {
		resp.ContainersStatuses = append(resp.ContainersStatuses, toContainerStatus(c))
	}
	if req.GetVerbose() {
		info, err := json.Marshal(sb)
		if err != nil {
			return nil, fmt.Errorf("render sandbox info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func toSandboxState(st sandbox.State) runtimeapi.PodSandboxState {
	if st == sandbox.StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func toSandboxMetadata(md sandbox.Metadata) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: md.Name, Namespace: md.Namespace, Uid: md.UID, Attempt: md.Attempt}
}

func nsMode(host bool) runtimeapi.NamespaceMode {
	if host {
		return runtimeapi.NamespaceMode_NODE
	}
	return runtimeapi.NamespaceMode_POD
}

func pidMode(c sandbox.Config) runtimeapi.NamespaceMode {
	switch {
	case c.HostPID:
		return runtimeapi.NamespaceMode_NODE
	case c.SharedPID:
		return runtimeapi.NamespaceMode_POD
	}
	return runtimeapi.NamespaceMode_CONTAINER
}

func toSandboxStatus(sb sandbox.Sandbox) *runtimeapi.PodSandboxStatus {
	st := &runtimeapi.PodSandboxStatus{
		Id:        sb.ID,
		Metadata:  toSandboxMetadata(sb.Config.Metadata),
		State:     toSandboxState(sb.State),
		CreatedAt: sb.CreatedAt.UnixNano(),
		Network:   &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network:       nsMode(sb.Config.HostNetwork),
			Pid:           pidMode(sb.Config),
			Ipc:           nsMode(sb.Config.HostIPC),
			UsernsOptions: toCRIUserNS(sb.Config.UserNS),
		}}},
		Labels:         sb.Config.Labels,
		Annotations:    sb.Config.Annotations,
		RuntimeHandler: sb.Config.RuntimeHandler,
	}
	// Host-network pods report no IP: kubelet fills in the node's.
	if len(sb.IPs) > 0 && sb.State == sandbox.StateReady {
		st.Network.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

// toCRIUserNS reports a pod's user namespace as the CRI asked for it.
func toCRIUserNS(u *ocispec.UserNamespace) *runtimeapi.UserNamespace {
	if u == nil {
		return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}
	}
	out := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
	for _, r := range u.UIDs {
		out.Uids = append(out.Uids, &runtimeapi.IDMapping{ContainerId: r.ContainerID, HostId: r.HostID, Length: r.Length})
	}
	for _, r := range u.GIDs {
		out.Gids = append(out.Gids, &runtimeapi.IDMapping{ContainerId: r.ContainerID, HostId: r.HostID, Length: r.Length})
	}
	return out
}
