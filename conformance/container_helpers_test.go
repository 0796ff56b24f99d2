package conformance

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// ctrEnv is a runtime with a pod network and a pulled busybox test image.
type ctrEnv struct {
	tg    *framework.Target
	reg   *framework.Registry
	image string // reference of the pulled default test image
	logs  string // the pods' log directory
}

func newCtrEnv(t *testing.T) *ctrEnv {
	t.Helper()
	tg := podTarget(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}
	e.image = e.pushAndPull(t, "conformance/busybox:ctr", framework.ImageSpec{})
	return e
}

// pushAndPull builds an image, serves it and pulls it into the runtime.
func (e *ctrEnv) pushAndPull(t testing.TB, repoTag string, spec framework.ImageSpec) string {
	t.Helper()
	return e.pushImageAndPull(t, repoTag, framework.MustBuildImage(t, spec))
}

// pushImageAndPull serves an image and pulls it into the runtime.
func (e *ctrEnv) pushImageAndPull(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, _ := e.reg.Push(t, repoTag, img)
	if _, err := pull(t, e.tg, ref, nil); err != nil {
		t.Fatalf("PullImage(%s): %v", ref, err)
	}
	return ref
}

// pod runs a pod whose containers log under e.logs.
func (e *ctrEnv) pod(t testing.TB, name string, mutate ...func(*runtimeapi.PodSandboxConfig)) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	cfg := podConfig(name)
	cfg.LogDirectory = e.logs
	for _, m := range mutate {
		m(cfg)
	}
	return runPod(t, e.tg, cfg), cfg
}

// ctrConfig is a container config running cmd in the default image.
func (e *ctrEnv) ctrConfig(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: e.image},
		Command:  cmd,
		LogPath:  name + "/0.log",
		Labels:   map[string]string{"container": name},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// create creates a container; it is removed when the test ends.
func (e *ctrEnv) create(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id, err := e.tryCreate(podID, podCfg, cfg)
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", cfg.Metadata.Name, err)
	}
	t.Cleanup(func() {
		_, _ = e.tg.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	})
	return id
}

func (e *ctrEnv) tryCreate(podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := e.tg.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg,
	})
	return resp.GetContainerId(), err
}

func (e *ctrEnv) start(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.tg.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer(%s): %v", id, err)
	}
}

// run creates and starts a container.
func (e *ctrEnv) run(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := e.create(t, podID, podCfg, cfg)
	e.start(t, id)
	return id
}

func (e *ctrEnv) status(t testing.TB, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := e.tg.Runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return resp.Status
}

// waitState polls ContainerStatus until the container is in state.
func (e *ctrEnv) waitState(t testing.TB, id string, state runtimeapi.ContainerState, within time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.status(t, id)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %v after %s, want %v (reason %q, message %q)", id, st.State, within, state, st.Reason, st.Message)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runToExit runs a container to its end and returns its status and log.
func (e *ctrEnv) runToExit(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) (*runtimeapi.ContainerStatus, []logLine) {
	t.Helper()
	id := e.run(t, podID, podCfg, cfg)
	st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	return st, readLog(t, st.LogPath)
}

// output is what a container printed on stdout and stderr, line by line.
func output(lines []logLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text)
		if l.full {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// logLine is one line of a CRI log file.
type logLine struct {
	at     time.Time
	stream string
	full   bool
	text   string
}

// readLog parses a CRI-format log file, failing on any malformed line.
func readLog(t testing.TB, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("container log: %v", err)
	}
	defer f.Close()
	return parseLog(t, f, path)
}

func parseLog(t testing.TB, f *os.File, path string) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 {
			t.Fatalf("%s: malformed CRI log line %q", path, sc.Text())
		}
		at, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil || (parts[1] != "stdout" && parts[1] != "stderr") || (parts[2] != "F" && parts[2] != "P") {
			t.Fatalf("%s: malformed CRI log line %q", path, sc.Text())
		}
		l := logLine{at: at, stream: parts[1], full: parts[2] == "F"}
		if len(parts) == 4 {
			l.text = parts[3]
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func osReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// jsonField digs a string out of a JSON document by keys.
func jsonField(t testing.TB, doc string, keys ...string) string {
	t.Helper()
	s, ok := jsonValue(t, doc, keys...).(string)
	if !ok {
		t.Fatalf("verbose info field %v is not a string", keys)
	}
	return s
}

// jsonNumber digs a number out of a JSON document by keys, as text.
func jsonNumber(t testing.TB, doc string, keys ...string) string {
	t.Helper()
	f, ok := jsonValue(t, doc, keys...).(float64)
	if !ok {
		t.Fatalf("verbose info field %v is not a number", keys)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func jsonValue(t testing.TB, doc string, keys ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("verbose info is not JSON: %v", err)
	}
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("verbose info has no %v", keys)
		}
		v = m[k]
	}
	return v
}
