package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// kubeadm runs the suite's kubeadm and returns its combined output.
func (c *Cluster) kubeadm(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubeadm"), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubeadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// TestKubeadmPreflightAndImages: what kubeadm asks of a node's runtime, as
// docs/kubernetes.md's kubeadm recipe has it (nodeRegistration.criSocket
// naming berth): `kubeadm config images pull` pulls the control plane's
// images through berth's ImageService, and `kubeadm init phase preflight`
// finds the runtime ready (CRI), RuntimeConfig implemented
// (ContainerRuntimeVersion) and the images present (ImagePull). The rest of
// preflight checks this host, not the runtime, and is not asserted:
// kubeadm init itself needs systemd as init, which this machine lacks.
func TestKubeadmPreflightAndImages(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	version, err := c.kubeadm(ctx, "version", "-o", "short")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "kubeadm.yaml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  criSocket: %s
  imagePullPolicy: IfNotPresent
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
imageRepository: %s
`, c.Berth.Endpoint(), strings.TrimSpace(version), c.Registry.Ref("kubeadm"))), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.kubeadm(ctx, "config", "images", "list", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	images := strings.Fields(list)
	if len(images) < 5 {
		t.Fatalf("kubeadm lists %d images: %q", len(images), list)
	}
	// Stand-ins for the control plane's images, under kubeadm's names in
	// the suite's registry: what is checked is that berth pulls and finds
	// them, not what they run.
	img := framework.MustBuildImage(t, framework.ImageSpec{})
	for _, ref := range images {
		repoTag, ok := strings.CutPrefix(ref, c.Registry.Host+"/")
		if !ok {
			t.Fatalf("kubeadm image %q is not in the configured repository %s", ref, c.Registry.Ref("kubeadm"))
		}
		c.Registry.Push(t, repoTag, img)
	}
	t.Cleanup(func() {
		for _, ref := range images {
			_, _ = c.Berth.Images.RemoveImage(context.WithoutCancel(ctx), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		}
	})

	out, err := c.kubeadm(ctx, "config", "images", "pull", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubeadm config images pull:\n%s", out)
	for _, ref := range images {
		st, err := c.Berth.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil || st.Image == nil {
			t.Errorf("after kubeadm config images pull, berth has no %s (%v); kubeadm said:\n%s", ref, err, out)
		}
	}

	out, err = c.kubeadm(ctx, "init", "phase", "preflight", "--config", cfg, "--ignore-preflight-errors=all")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubeadm init phase preflight:\n%s", out)
	// Ignored errors are printed as warnings: "[WARNING <Check>]: ...".
	runtimeChecks := regexp.MustCompile(`\[WARNING (CRI|ContainerRuntimeVersion|ImagePull)\][^\n]*`)
	if bad := runtimeChecks.FindAllString(out, -1); len(bad) > 0 {
		t.Errorf("kubeadm preflight found fault with the runtime:\n%s\n\nwhole output:\n%s", strings.Join(bad, "\n"), out)
	}
	if !strings.Contains(out, "[preflight]") {
		t.Errorf("kubeadm preflight did not run its checks:\n%s", out)
	}
}
