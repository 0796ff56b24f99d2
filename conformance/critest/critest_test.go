package critest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/conformance/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

// Environment of the suite.
const (
	// GateEnv set to 1 runs critest (it needs root and CriTestEnv).
	GateEnv = "BERTH_CRITEST"
	// CriTestEnv names the critest binary (make critest builds it).
	CriTestEnv = "BERTH_CRITEST_BIN"
	// FocusEnv and SkipEnv add a --ginkgo.focus / --ginkgo.skip regexp.
	FocusEnv = "BERTH_CRITEST_FOCUS"
	SkipEnv  = "BERTH_CRITEST_SKIP"
	// ArgsEnv adds critest flags (space-separated), e.g. --websocket-attach.
	ArgsEnv = "BERTH_CRITEST_ARGS"
)

// TestCritest runs cri-tools' validation suite against a berth of its own,
// with the images it pulls served from an in-process registry that the
// daemon's hosts.toml puts in place of registry.k8s.io and gcr.io.
func TestCritest(t *testing.T) {
	if os.Getenv(GateEnv) != "1" {
		t.Skipf("critest runs only with %s=1 and %s (make critest, as root)", GateEnv, CriTestEnv)
	}
	bin := os.Getenv(CriTestEnv)
	if bin == "" {
		t.Fatalf("%s is not set", CriTestEnv)
	}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	pushStandIns(t, reg)
	d := framework.StartDaemon(t, framework.DaemonOptions{Network: true})
	// berth reads hosts.toml at every pull.
	for _, upstream := range []string{"registry.k8s.io", "gcr.io"} {
		writeMirror(t, d.RegistryConfigDir, upstream, reg.Host)
	}
	args := []string{
		"--runtime-endpoint", d.Endpoint(), "--image-endpoint", d.Endpoint(),
		"--ginkgo.no-color", "--ginkgo.v", "--ginkgo.timeout", "20m",
	}
	if f := os.Getenv(FocusEnv); f != "" {
		args = append(args, "--ginkgo.focus", f)
	}
	if s := os.Getenv(SkipEnv); s != "" {
		args = append(args, "--ginkgo.skip", s)
	}
	args = append(args, strings.Fields(os.Getenv(ArgsEnv))...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	report := filepath.Join(os.TempDir(), "berth-critest.log")
	_ = os.WriteFile(report, out, 0o644)
	summary := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Ran ") || strings.Contains(line, "Passed |") || strings.HasPrefix(strings.TrimSpace(line), "[FAIL]") {
			summary += line + "\n"
		}
	}
	t.Logf("critest output in %s:\n%s", report, summary)
	if err != nil {
		t.Errorf("critest: %v", err)
	}
}

// writeMirror makes hosts.toml send pulls of upstream to the registry over
// plain HTTP.
func writeMirror(t *testing.T, dir, upstream, registry string) {
	t.Helper()
	d := filepath.Join(dir, upstream)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", registry)
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goBinary builds one of testdata's programs, static.
func goBinary(t *testing.T, name string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./testdata/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushStandIns pushes busybox-based stand-ins for the images critest pulls,
// under their repository paths.
func pushStandIns(t *testing.T, reg *framework.Registry) {
	t.Helper()
	web := goBinary(t, "webserver")
	nnp := goBinary(t, "nnp")
	// The real busybox image's command is sh.
	busybox := framework.MustBuildImage(t, framework.ImageSpec{Cmd: []string{"sh"}})
	server := func(path string, args ...string) framework.ImageSpec {
		return framework.ImageSpec{
			Files:      []framework.File{{Path: path, Content: web, Mode: 0o755}},
			Entrypoint: append([]string{path}, args...),
		}
	}
	images := map[string]framework.ImageSpec{
		"e2e-test-images/nginx:1.14-2":                     server("/usr/sbin/nginx"),
		"e2e-test-images/httpd:2.4.39-4":                   server("/usr/local/bin/httpd"),
		"k8s-staging-cri-tools/hostnet-nginx-amd64:latest": server("/usr/sbin/nginx", "12003"),
		"e2e-test-images/nonewprivs:1.3": {
			Files:      []framework.File{{Path: "/usr/local/bin/nnp", Content: nnp, Mode: 0o755 | os.ModeSetuid}},
			Entrypoint: []string{"/usr/local/bin/nnp"},
		},
	}
	for _, ref := range []string{"e2e-test-images/busybox:1.29-2", "k8s-staging-cri-tools/test-image-tag:test"} {
		reg.Push(t, ref, busybox)
	}
	for ref, spec := range images {
		reg.Push(t, ref, framework.MustBuildImage(t, spec))
	}
}
