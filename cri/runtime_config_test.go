package cri_test

import (
	"context"
	"testing"

	"github.com/berth-runtime/berth/internal/config"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRuntimeConfigReportsCgroupDriver(t *testing.T) {
	for driver, want := range map[string]runtimeapi.CgroupDriver{
		config.CgroupDriverCgroupfs: runtimeapi.CgroupDriver_CGROUPFS,
		config.CgroupDriverSystemd:  runtimeapi.CgroupDriver_SYSTEMD,
	} {
		cfg := testConfig(t)
		cfg.CgroupDriver = driver
		s := startServer(t, cfg, nil)
		resp, err := s.rt.RuntimeConfig(context.Background(), &runtimeapi.RuntimeConfigRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetLinux().GetCgroupDriver(); got != want {
			t.Errorf("driver %s reported as %v, want %v", driver, got, want)
		}
	}
}
