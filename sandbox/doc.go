// Package sandbox will own pod sandboxes: the pod's network, IPC and UTS
// namespaces pinned without an infra container or pause image, the pod
// cgroup, and the per-pod monitor process that parents the pod's containers.
// Nothing is built here yet; the CRI layer answers the sandbox RPCs with
// codes.Unimplemented until it is.
package sandbox
