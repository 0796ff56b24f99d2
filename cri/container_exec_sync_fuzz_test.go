package cri

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzExecSyncRequest feeds ExecSync any request (fuzzed protobuf bytes,
// with the container ID and the command given directly, its arguments
// separated by "\n") on a runtime without containers: the validation
// before the exec.
//
// Properties: nothing panics; a request without container ID or command,
// with a negative timeout or with a NUL byte in an argument is
// InvalidArgument, any other is NotFound (there is no container to run it
// in), and nothing is created; every positive timeout is a positive
// duration of at least as many seconds as fit in one (no overflow into an
// instant timeout).
func FuzzExecSyncRequest(f *testing.F) {
	probe := &runtimeapi.ExecSyncRequest{
		ContainerId: "4f1c9e0b7a3d", Cmd: []string{"/bin/sh", "-c", "test -f /tmp/healthy"}, Timeout: 1,
	}
	for _, req := range []*runtimeapi.ExecSyncRequest{
		probe,
		{ContainerId: "4f1c9e0b7a3d", Cmd: []string{"cat", "/etc/hostname"}},
		{ContainerId: "4f1c9e0b7a3d", Cmd: []string{"sleep", "10"}, Timeout: math.MaxInt64},
		{ContainerId: "4f1c9e0b7a3d", Cmd: []string{"sleep", "10"}, Timeout: int64(math.MaxInt64/time.Second) + 1},
		{ContainerId: "4f1c9e0b7a3d", Cmd: []string{"true"}, Timeout: -1},
		{ContainerId: "4f1c9e0b7a3d"},
		{Cmd: []string{"true"}},
		{ContainerId: "../../../etc", Cmd: []string{"/bin/sh\x00-c"}},
		{ContainerId: "\x00", Cmd: []string{""}},
		{ContainerId: strings.Repeat("f", 10000), Cmd: slices.Repeat([]string{"ü"}, 1000)},
		{},
	} {
		f.Add(mustMarshal(f, req), "", "")
	}
	base := mustMarshal(f, probe)
	for _, s := range []struct{ id, cmd string }{
		{"4f1c9e0b7a3d", "ls\n-la\n/"},
		{"4f", "\n"},
		{"4f1c9e0b7a3d", "a\x00b"},
		{"/", "../../bin/sh"},
	} {
		f.Add(base, s.id, s.cmd)
	}

	fm := newFuzzManager(f)
	s := &Server{sandboxes: fm.Manager, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, data []byte, id, cmd string) {
		req := &runtimeapi.ExecSyncRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			return
		}
		if id != "" {
			req.ContainerId = id
		}
		if cmd != "" {
			req.Cmd = strings.Split(cmd, "\n")
		}
		invalid := req.ContainerId == "" || len(req.Cmd) == 0 || req.Timeout < 0 ||
			slices.ContainsFunc(req.Cmd, func(a string) bool { return strings.ContainsRune(a, 0) })
		orig := proto.Clone(req)
		_, err := s.ExecSync(context.Background(), req)
		if !proto.Equal(orig, req) {
			t.Fatal("ExecSync changed the request")
		}
		if invalid {
			requireCode(t, "ExecSync", err, codes.InvalidArgument)
		} else {
			requireCode(t, "ExecSync", err, codes.NotFound)
		}
		fm.requireUntouched(t)

		if tm := req.Timeout; tm > 0 {
			d := execSyncTimeout(tm)
			if d <= 0 || d < time.Duration(min(tm, int64(math.MaxInt64/time.Second)))*time.Second {
				t.Fatalf("timeout %ds became %v", tm, d)
			}
		}
	})
}
