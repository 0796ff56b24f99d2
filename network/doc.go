// Package network owns pod networking: finding the CNI network config pods
// join, the pod CIDR kubelet hands down, and (in later work) the pinned
// network namespaces and CNI ADD/DEL through libcni. It knows nothing of gRPC;
// its errors are containerd errdefs types that the CRI layer maps to codes.
package network
