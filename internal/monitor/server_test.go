package monitor

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestRequestMatchesAPI keeps request (what the monitor decodes) in step
// with monitorapi.Request (what the daemon sends).
func TestRequestMatchesAPI(t *testing.T) {
	tags := func(typ reflect.Type) map[string]bool {
		out := map[string]bool{}
		for i := range typ.NumField() {
			out[typ.Field(i).Tag.Get("json")] = true
		}
		return out
	}
	if a, b := tags(reflect.TypeFor[monitorapi.Request]()), tags(reflect.TypeFor[request]()); !reflect.DeepEqual(a, b) {
		t.Fatalf("monitorapi.Request has fields %v, request %v", a, b)
	}
	limit := int64(42)
	in := monitorapi.Request{
		Op: monitorapi.OpUpdate, ID: "c", Signal: 9, All: true,
		Create:    &monitorapi.CreateRequest{Bundle: "/b", LogPath: "/l", Stdin: true, TTY: true},
		Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var got request
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(got.Resources, &res); err != nil || res.Pids == nil || *res.Pids.Limit != 42 {
		t.Fatalf("resources %s: %v", got.Resources, err)
	}
	if got.Op != in.Op || got.ID != in.ID || got.Signal != 9 || !got.All || !reflect.DeepEqual(got.Create, in.Create) {
		t.Fatalf("decoded %+v from %s", got, b)
	}
}
