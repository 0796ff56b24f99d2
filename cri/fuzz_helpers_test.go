package cri

// Helpers shared by the fuzz targets of this package (*_fuzz_test.go).
// The targets run as ordinary tests on their seed corpus (and on
// testdata/fuzz/<Target>/) in `go test`, and for real in `make fuzz`.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-runtime/berth/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// grpcCode is the code a client gets for err (the interceptors turn
// errors into statuses with toStatus).
func grpcCode(err error) codes.Code {
	return status.Code(toStatus(err))
}

// requireCode fails unless err is a gRPC status of one of the codes.
func requireCode(t *testing.T, what string, err error, want ...codes.Code) {
	t.Helper()
	if got := grpcCode(err); !slices.Contains(want, got) {
		t.Fatalf("%s: error %s is %v, want one of %v", what, short(fmt.Sprint(err)), got, want)
	}
}

// short quotes s, cut to a readable length (fuzzed strings can be long).
func short(s string) string {
	if len(s) > 300 {
		s = s[:150] + "..." + s[len(s)-150:]
	}
	return strconv.Quote(s)
}

// hasDotDot reports whether a slash-separated path has a ".." element.
func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// fuzzManager is a sandbox manager on empty temp directories with no pod
// sandboxes and no containers, for requests that must be refused (or find
// nothing) before any work is done.
//
// Its root is unusable (below a regular file): the first thing RunPodSandbox
// does once a config passed validation is to record it there, which then
// fails with ENOTDIR. So RunPodSandbox can be fuzzed end to end: it either
// refuses the config or fails at that record, and makes nothing either way.
//
// It uses the systemd cgroup driver: at start a manager removes the pod
// cgroups no record of its own owns under berth's cgroupfs parent, which
// would include those of any berth (or test) running on this machine;
// under systemd it leaves the slices alone. It has no image store.
type fuzzManager struct {
	*sandbox.Manager
	root, state string
}

// noRootfs is an image store without containers; nothing else of it may
// be used.
type noRootfs struct{ sandbox.Rootfs }

func (noRootfs) RootfsOwners(context.Context) ([]string, error) { return nil, nil }

func newFuzzManager(tb testing.TB) *fuzzManager {
	tb.Helper()
	dir := tb.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	fm := &fuzzManager{root: filepath.Join(file, "root"), state: filepath.Join(dir, "state")}
	m, err := sandbox.NewManager(context.Background(), sandbox.Options{
		Root: fm.root, State: fm.state, CgroupDriver: sandbox.DriverSystemd,
		Handlers: []string{"runc"}, Log: slog.New(slog.DiscardHandler), Rootfs: noRootfs{},
	})
	if err != nil {
		tb.Fatal(err)
	}
	fm.Manager = m
	return fm
}

// requireUntouched fails if anything was recorded or created: the records
// directories and the state's sandboxes/containers directories must still
// be empty, and the manager must know no sandbox and no container.
func (fm *fuzzManager) requireUntouched(t *testing.T) {
	t.Helper()
	for _, dir := range []string{
		filepath.Join(fm.root, "sandboxes"), filepath.Join(fm.root, "containers"),
		filepath.Join(fm.state, "sandboxes"), filepath.Join(fm.state, "containers"),
	} {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			t.Fatal(err)
		}
		if len(entries) > 0 {
			t.Fatalf("a refused request left %s in %s", entries[0].Name(), dir)
		}
	}
	if n := len(fm.List(sandbox.Filter{})); n > 0 {
		t.Fatalf("a refused request left %d pod sandboxes", n)
	}
	if n := len(fm.ListContainers(sandbox.ContainerFilter{})); n > 0 {
		t.Fatalf("a refused request left %d containers", n)
	}
}

// mustMarshal encodes a seed message.
func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
