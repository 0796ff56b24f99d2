package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// tokenAudience is the audience of the projected service-account token.
const tokenAudience = "berth-e2e"

// TestVolumes: a pod of two containers with a ConfigMap, a Secret, a
// projected service-account token, an emptyDir and a memory emptyDir: the
// containers see the kubelet's content (read through berth's ExecSync and
// kubectl exec), the API volumes read-only, the token is a JWT for the
// pod's namespace and the asked audience that the apiserver accepts, the
// emptyDir is shared by the containers and on the node's disk, the memory
// one a tmpfs.
func TestVolumes(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-vol")
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns},
		Data:       map[string]string{"greeting": "hello from a configmap", "multi.conf": "a=1\nb=2\n"},
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secretBytes := []byte("s3cr3t\x00\xffbinary")
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns},
		Data:       map[string][]byte{"password": secretBytes},
	}
	if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	memLimit := resource.MustParse("16Mi")
	mounts := []corev1.VolumeMount{
		{Name: "cfg", MountPath: "/cfg"},
		{Name: "sec", MountPath: "/sec"},
		{Name: "token", MountPath: "/token"},
		{Name: "scratch", MountPath: "/scratch"},
		{Name: "mem", MountPath: "/mem"},
	}
	ctr := func(name string) corev1.Container {
		return corev1.Container{Name: name, Image: c.Images["1"], Command: loopCommand(name + " up"), VolumeMounts: mounts}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vols", Namespace: ns},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{ctr("writer"), ctr("reader")},
			Volumes: []corev1.Volume{
				{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
				{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: "creds", DefaultMode: new(int32(0o400))}}},
				{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
						Audience: tokenAudience, ExpirationSeconds: new(int64(3600)), Path: "sa-token"}}}}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					Medium: corev1.StorageMediumMemory, SizeLimit: &memLimit}}},
			},
		},
	}
	p := createReadyPod(t, c, pod)
	writer := berthContainer(t, c, ns, "vols", "writer")
	reader := berthContainer(t, c, ns, "vols", "reader")

	t.Run("ConfigMap", func(t *testing.T) {
		if got := execInBerth(t, c, reader, "cat", "/cfg/greeting"); got != cm.Data["greeting"] {
			t.Errorf("/cfg/greeting = %q, want %q", got, cm.Data["greeting"])
		}
		// Through apiserver -> kubelet -> berth's streaming exec as well.
		out, err := c.Kubectl(ctx, "-n", ns, "exec", "vols", "-c", "writer", "--", "cat", "/cfg/multi.conf")
		if err != nil || out != cm.Data["multi.conf"] {
			t.Errorf("kubectl exec cat /cfg/multi.conf = %q, %v; want %q", out, err, cm.Data["multi.conf"])
		}
		mustFailInBerth(t, c, writer, "touch", "/cfg/new-file") // the kubelet mounts it read-only
	})
	t.Run("Secret", func(t *testing.T) {
		resp, err := c.Berth.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: reader, Cmd: []string{"cat", "/sec/password"}, Timeout: 30})
		if err != nil || resp.ExitCode != 0 {
			t.Fatalf("cat /sec/password: %v %v", err, resp)
		}
		if string(resp.Stdout) != string(secretBytes) {
			t.Errorf("/sec/password = %q, want %q (byte for byte)", resp.Stdout, secretBytes)
		}
		if got := execInBerth(t, c, reader, "stat", "-L", "-c", "%a", "/sec/password"); got != "400" {
			t.Errorf("/sec/password has mode %s, want the defaultMode 400", got)
		}
		mustFailInBerth(t, c, writer, "sh", "-c", "echo x > /sec/password")
	})
	t.Run("ServiceAccountToken", func(t *testing.T) {
		token := execInBerth(t, c, reader, "cat", "/token/sa-token")
		claims := jwtClaims(t, token)
		var aud []string
		switch a := claims["aud"].(type) {
		case string:
			aud = []string{a}
		case []any:
			for _, v := range a {
				aud = append(aud, fmt.Sprint(v))
			}
		}
		if !slices.Equal(aud, []string{tokenAudience}) {
			t.Errorf("token audience %v, want [%s]", aud, tokenAudience)
		}
		want := "system:serviceaccount:" + ns + ":default"
		if claims["sub"] != want {
			t.Errorf("token subject %v, want %s", claims["sub"], want)
		}
		k8s, _ := claims["kubernetes.io"].(map[string]any)
		podClaim, _ := k8s["pod"].(map[string]any)
		if k8s["namespace"] != ns || podClaim["name"] != "vols" || podClaim["uid"] != string(p.UID) {
			t.Errorf("token's kubernetes.io claims %v, want namespace %s, pod vols (uid %s)", k8s, ns, p.UID)
		}
		// The apiserver itself accepts it for that audience, bound to the pod.
		tr, err := c.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{tokenAudience}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenReview: %v", err)
		}
		if !tr.Status.Authenticated || tr.Status.User.Username != want {
			t.Errorf("TokenReview of the pod's token: authenticated %v as %q (%s), want %s", tr.Status.Authenticated, tr.Status.User.Username, tr.Status.Error, want)
		}
	})
	t.Run("EmptyDir", func(t *testing.T) {
		execInBerth(t, c, writer, "sh", "-c", "echo written-by-writer > /scratch/shared")
		if got := execInBerth(t, c, reader, "cat", "/scratch/shared"); got != "written-by-writer" {
			t.Errorf("reader sees /scratch/shared = %q, want the writer's content", got)
		}
		// On the node's disk, in the kubelet's pod directory.
		host := filepath.Join(c.Kubelet.RootDir, "pods", string(p.UID), "volumes", "kubernetes.io~empty-dir", "scratch", "shared")
		if b, err := os.ReadFile(host); err != nil || strings.TrimSpace(string(b)) != "written-by-writer" {
			t.Errorf("node's %s: %q, %v", host, b, err)
		}
		if fs := mountFSType(t, c, reader, "/scratch"); fs == "tmpfs" {
			t.Errorf("/scratch (a disk emptyDir) is a tmpfs")
		}
	})
	t.Run("EmptyDirMemory", func(t *testing.T) {
		if fs := mountFSType(t, c, reader, "/mem"); fs != "tmpfs" {
			t.Errorf("/mem (emptyDir medium Memory) has type %q in /proc/mounts, want tmpfs", fs)
		}
		execInBerth(t, c, writer, "sh", "-c", "echo in-memory > /mem/f")
		if got := execInBerth(t, c, reader, "cat", "/mem/f"); got != "in-memory" {
			t.Errorf("reader sees /mem/f = %q, want the writer's content", got)
		}
	})
}

// mustFailInBerth runs cmd through berth's ExecSync and fails t unless it
// exits non-zero.
func mustFailInBerth(t *testing.T, c *Cluster, id string, cmd ...string) {
	t.Helper()
	resp, err := c.Berth.Runtime.ExecSync(t.Context(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("berth ExecSync %v: %v", cmd, err)
	}
	if resp.ExitCode == 0 {
		t.Errorf("%v succeeded in container %s: want it refused (read-only mount)", cmd, id)
	}
}

// mountFSType is the filesystem type of the mount at path in the
// container's /proc/mounts ("" when nothing is mounted there).
func mountFSType(t *testing.T, c *Cluster, id, path string) string {
	t.Helper()
	fs := ""
	for _, l := range strings.Split(execInBerth(t, c, id, "cat", "/proc/mounts"), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == path {
			fs = f[2] // the last one is on top
		}
	}
	return fs
}

// jwtClaims decodes a JWT's payload (without checking its signature: the
// TokenReview does that).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT (3 dot-separated parts)", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatalf("token payload %s: %v", b, err)
	}
	return claims
}
