// Package image will own images: containerd v2's content store, metadata and
// garbage collection and overlay snapshotter used as libraries under the
// berth root, pulls through containerd's resolver and hosts.toml registry
// config. Nothing is built here yet; the CRI layer answers the ImageService
// RPCs with codes.Unimplemented until it is.
package image
