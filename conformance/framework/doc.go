// Package framework is the shared test harness: helpers that conformance and
// integration tests use to set up the world a container runtime is exercised
// against.
//
// Among other things it can build small, deterministic OCI (or Docker schema
// 2) images from the host's busybox-static binary (BuildImage, BuildIndex)
// and serve them from an in-process registry with optional basic auth,
// bandwidth throttling and request accounting (StartRegistry).
//
// Helpers in this package report failures through testing.TB and register
// their teardown with t.Cleanup, so tests do not need to release anything
// explicitly.
package framework
