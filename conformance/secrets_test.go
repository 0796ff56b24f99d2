package conformance

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// Registry credentials, environment values and exec arguments never reach
// berth's log, even at debug level (the framework's daemons log at debug),
// also when the request fails.
func TestSecretsNeverLogged(t *testing.T) {
	const password, envValue, execArg = "pw-Zq81xKpLm", "env-7f3Jw0Rr", "arg-Vb92nQ4s"
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{Username: "kubelet", Password: password})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}
	ref, _ := reg.Push(t, "conformance/private:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	// A wrong password first (the failure path), then the right one.
	if _, err := pull(t, tg, ref, &runtimeapi.AuthConfig{Username: "kubelet", Password: password + "-wrong"}); err == nil {
		t.Fatal("a pull with a wrong password succeeded")
	}
	if _, err := pull(t, tg, ref, &runtimeapi.AuthConfig{Username: "kubelet", Password: password}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	e.image = ref
	podID, podCfg := e.pod(t, "secrets")
	cfg := e.ctrConfig("secrets", "sleep", "3600")
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "API_TOKEN", Value: []byte(envValue)}}
	id := e.run(t, podID, podCfg, cfg)
	if got := e.mustExecSync(t, id, "sh", "-c", "echo $API_TOKEN "+execArg); got != envValue+" "+execArg+"\n" {
		t.Fatalf("exec output %q", got)
	}
	logs := d.Logs()
	for _, secret := range []string{password, envValue, execArg} {
		if strings.Contains(logs, secret) {
			t.Errorf("berth's log contains %q:\n%s", secret, grepLines(logs, secret))
		}
	}
}
