package ocispec

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestNamespaces(t *testing.T) {
	ns := func(t specs.LinuxNamespaceType, path string) specs.LinuxNamespace {
		return specs.LinuxNamespace{Type: t, Path: path}
	}
	pinnedIPC, pinnedUTS, pinnedNet := ns(specs.IPCNamespace, "/run/berth/ipc/pod1"), ns(specs.UTSNamespace, "/run/berth/uts/pod1"), ns(specs.NetworkNamespace, "/run/berth/netns/pod1")
	mnt := ns(specs.MountNamespace, "")
	for _, tc := range []struct {
		name       string
		edit       func(in *Input)
		v2         bool
		want       []specs.LinuxNamespace
		wantClass  func(error) bool
		wantWords  []string
		privileged bool
	}{
		{
			name: "pid CONTAINER: a new one, pod's others",
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), pinnedIPC, pinnedUTS, mnt, pinnedNet},
		},
		{
			name: "pid POD joins the pod's",
			edit: func(in *Input) { in.Container.Security.PIDNS = NamespacePod; in.Pod.PIDNS = "/run/berth/pid/pod1" },
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, "/run/berth/pid/pod1"), pinnedIPC, pinnedUTS, mnt, pinnedNet},
		},
		{
			name:      "pid POD without a pod PID namespace",
			edit:      func(in *Input) { in.Container.Security.PIDNS = NamespacePod },
			wantClass: isInvalid, wantWords: []string{"pid is POD", "pod1"},
		},
		{
			name: "pid POD of a host-PID pod is the host's",
			edit: func(in *Input) { in.Container.Security.PIDNS = NamespacePod; in.Pod.HostPID = true },
			want: []specs.LinuxNamespace{pinnedIPC, pinnedUTS, mnt, pinnedNet},
		},
		{
			name: "pid NODE is the host's",
			edit: func(in *Input) { in.Container.Security.PIDNS = NamespaceNode },
			want: []specs.LinuxNamespace{pinnedIPC, pinnedUTS, mnt, pinnedNet},
		},
		{
			name: "pid TARGET joins the target's",
			edit: func(in *Input) {
				in.Container.Security.PIDNS = NamespaceTarget
				in.Container.Security.TargetPIDNS = "/proc/4242/ns/pid"
			},
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, "/proc/4242/ns/pid"), pinnedIPC, pinnedUTS, mnt, pinnedNet},
		},
		{
			name:      "pid TARGET without a target",
			edit:      func(in *Input) { in.Container.Security.PIDNS = NamespaceTarget },
			wantClass: isInvalid, wantWords: []string{"TARGET"},
		},
		{
			name:      "unknown pid mode",
			edit:      func(in *Input) { in.Container.Security.PIDNS = 7 },
			wantClass: isInvalid, wantWords: []string{"namespace_options.pid 7"},
		},
		{
			name:      "network CONTAINER is refused",
			edit:      func(in *Input) { in.Container.Security.NetworkNS = NamespaceContainer },
			wantClass: isInvalid, wantWords: []string{"namespace_options.network"},
		},
		{
			name: "host network: host network and UTS",
			edit: func(in *Input) {
				in.Pod.NetNS, in.Pod.UTSNS, in.Pod.HostNetwork = "", "", true
				in.Container.Security.NetworkNS = NamespaceNode
			},
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), pinnedIPC, mnt},
		},
		{
			name: "host IPC",
			edit: func(in *Input) { in.Pod.IPCNS, in.Pod.HostIPC = "", true },
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), pinnedUTS, mnt, pinnedNet},
		},
		{
			name:      "pod without network namespace nor host network",
			edit:      func(in *Input) { in.Pod.NetNS = "" },
			wantClass: isPrecondition, wantWords: []string{"network namespace"},
		},
		{
			name:      "pod without IPC namespace nor host IPC",
			edit:      func(in *Input) { in.Pod.IPCNS = "" },
			wantClass: isPrecondition, wantWords: []string{"IPC namespace"},
		},
		{
			name:      "pod without UTS namespace",
			edit:      func(in *Input) { in.Pod.UTSNS = "" },
			wantClass: isPrecondition, wantWords: []string{"UTS namespace"},
		},
		{
			name:      "relative namespace path",
			edit:      func(in *Input) { in.Pod.NetNS = "netns/pod1" },
			wantClass: isInvalid, wantWords: []string{`"netns/pod1"`},
		},
		{
			name: "cgroup v2: a cgroup namespace",
			v2:   true,
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), pinnedIPC, pinnedUTS, mnt, pinnedNet, ns(specs.CgroupNamespace, "")},
		},
		{
			name: "cgroup v2 privileged: no cgroup namespace", v2: true, privileged: true,
			want: []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), pinnedIPC, pinnedUTS, mnt, pinnedNet},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, f := newTestGenerator(t, Defaults{})
			f.v2 = tc.v2
			in := baseInput(t)
			in.Container.Security.Privileged = tc.privileged
			if tc.edit != nil {
				tc.edit(&in)
			}
			res, err := g.Generate(in)
			if tc.wantClass != nil {
				wantErr(t, err, tc.wantClass, tc.wantWords...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Spec.Linux.Namespaces; !slices.Equal(got, tc.want) {
				t.Errorf("namespaces = %v\nwant         %v", got, tc.want)
			}
		})
	}
}

// A pod in a user namespace: its containers join it first, get its ID
// mappings, and may have ID-mapped bind mounts; a container cannot ask for
// one its pod lacks, nor for other mappings.
func TestUserNamespace(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	mappings := &UserNamespace{UIDs: []IDMapping{{0, 100000, 65536}}, GIDs: []IDMapping{{0, 200000, 65536}}}

	in := baseInput(t)
	in.Container.Security.UserNS = mappings
	_, err := g.Generate(in)
	wantErr(t, err, isInvalid, "is not in one")

	in = baseInput(t)
	in.Pod.UserNS, in.Pod.UserNSMappings = "/run/berth/sandboxes/pod1/user", mappings
	in.Container.Security.UserNS = &UserNamespace{UIDs: mappings.UIDs, GIDs: []IDMapping{{0, 100000, 65536}}}
	_, err = g.Generate(in)
	wantErr(t, err, isInvalid, "differ")

	in.Container.Security.UserNS = mappings
	src := t.TempDir()
	in.Container.Mounts = []Mount{{ContainerPath: "/data", HostPath: src,
		UIDMappings: []IDMapping{{0, 300000, 10}}, GIDMappings: []IDMapping{{0, 300000, 10}}}}
	res, err := g.Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	l := res.Spec.Linux
	if ns := l.Namespaces[0]; ns.Type != specs.UserNamespace || ns.Path != in.Pod.UserNS {
		t.Errorf("first namespace %+v, want the pod's user namespace", ns)
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if !slices.Equal(l.UIDMappings, want) || l.GIDMappings[0].HostID != 200000 {
		t.Errorf("mappings %v / %v", l.UIDMappings, l.GIDMappings)
	}
	i := slices.IndexFunc(res.Spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/data" })
	if i < 0 || len(res.Spec.Mounts[i].UIDMappings) != 1 || res.Spec.Mounts[i].UIDMappings[0].HostID != 300000 {
		t.Errorf("ID-mapped bind mount: %+v", res.Spec.Mounts)
	}
}
