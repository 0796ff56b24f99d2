// Package image owns images: containerd v2's content store, bbolt metadata
// (leases, garbage collection) and overlay snapshotter used as libraries
// under <root>/image — no containerd daemon. Pulls go through containerd's
// docker resolver with registry hosts from a certs.d/<host>/hosts.toml
// directory; layers download in parallel and unpack into committed overlay
// snapshots as they arrive. The package knows nothing of gRPC: its errors
// wrap containerd errdefs types and the CRI layer maps them to codes.
package image
