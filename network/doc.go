// Package network owns pod networking: finding the CNI network config pods
// join (LoadPodNetwork), the pod CIDRs kubelet hands down (PodCIDRs), the
// pinned network namespaces pods live in (CreateNetNS, RemoveNetNS,
// BringUpLoopback, ApplySysctls), and attaching pods to the network with CNI
// ADD/DEL through libcni (Manager.Setup, Manager.Teardown). It knows nothing
// of gRPC; its errors are containerd errdefs types that the CRI layer maps to
// codes.
package network
