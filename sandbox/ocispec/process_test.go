package ocispec

import (
	"slices"
	"testing"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestProcessArgs(t *testing.T) {
	img := imagespec.ImageConfig{Entrypoint: []string{"/entry", "-e"}, Cmd: []string{"cmd", "-c"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		image         imagespec.ImageConfig
		want          []string
	}{
		{name: "neither: entrypoint+cmd", image: img, want: []string{"/entry", "-e", "cmd", "-c"}},
		{name: "args only: entrypoint+args", args: []string{"a1"}, image: img, want: []string{"/entry", "-e", "a1"}},
		{name: "command only: command, no cmd", command: []string{"/bin/x"}, image: img, want: []string{"/bin/x"}},
		{name: "command and args", command: []string{"/bin/x"}, args: []string{"a1", "a2"}, image: img, want: []string{"/bin/x", "a1", "a2"}},
		{name: "no entrypoint: cmd", image: imagespec.ImageConfig{Cmd: []string{"sh"}}, want: []string{"sh"}},
		{name: "empty entrypoint string is none", image: imagespec.ImageConfig{Entrypoint: []string{""}, Cmd: []string{"sh"}}, want: []string{"sh"}},
		{name: "args with empty entrypoint", args: []string{"ls"}, image: imagespec.ImageConfig{Entrypoint: []string{""}, Cmd: []string{"sh"}}, want: []string{"ls"}},
		{name: "entrypoint only", image: imagespec.ImageConfig{Entrypoint: []string{"/e"}}, want: []string{"/e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processArgs(Container{Command: tc.command, Args: tc.args}, tc.image)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("args = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProcessArgsNone(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Command = nil
	in.Image = imagespec.ImageConfig{Entrypoint: []string{""}}
	_, err := g.Generate(in)
	wantErr(t, err, isInvalid, "no command")
}

func TestEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tty      bool
		imageEnv []string
		ctrEnv   []KeyValue
		want     []string
	}{
		{
			name: "defaults",
			want: []string{defaultPath, "HOSTNAME=h"},
		},
		{
			name: "tty adds TERM before HOSTNAME",
			tty:  true,
			want: []string{defaultPath, "TERM=xterm", "HOSTNAME=h"},
		},
		{
			name:     "image PATH replaces the default in place, then image, then container",
			imageEnv: []string{"A=1", "PATH=/img/bin", "B=2"},
			ctrEnv:   []KeyValue{{"C", "3"}},
			want:     []string{"PATH=/img/bin", "HOSTNAME=h", "A=1", "B=2", "C=3"},
		},
		{
			name:     "container wins over image, at the image's place",
			imageEnv: []string{"A=img", "B=img"},
			ctrEnv:   []KeyValue{{"A", "ctr"}, {"D", "x=y"}},
			want:     []string{defaultPath, "HOSTNAME=h", "A=ctr", "B=img", "D=x=y"},
		},
		{
			name:   "container may override HOSTNAME and TERM",
			tty:    true,
			ctrEnv: []KeyValue{{"HOSTNAME", "mine"}, {"TERM", "vt100"}},
			want:   []string{defaultPath, "TERM=vt100", "HOSTNAME=mine"},
		},
		{
			name:     "image entry without = unsets",
			imageEnv: []string{"PATH", "X=1"},
			want:     []string{"HOSTNAME=h", "X=1"},
		},
		{
			name:   "empty value is kept",
			ctrEnv: []KeyValue{{"EMPTY", ""}},
			want:   []string{defaultPath, "HOSTNAME=h", "EMPTY="},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := environment("h", tc.tty, tc.imageEnv, tc.ctrEnv)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("env = %q\nwant  %q", got, tc.want)
			}
		})
	}
	if _, err := environment("h", false, nil, []KeyValue{{"", "v"}}); !isInvalid(err) {
		t.Errorf("empty name: err = %v, want InvalidArgument", err)
	}
	if _, err := environment("h", false, nil, []KeyValue{{"K", "a\x00b"}}); !isInvalid(err) {
		t.Errorf("NUL byte: err = %v, want InvalidArgument", err)
	}
}

func TestHostnameEnv(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	res := mustGenerate(t, g, in)
	if !slices.Contains(res.Spec.Process.Env, "HOSTNAME=pod-host") {
		t.Errorf("env %q lacks the pod's hostname", res.Spec.Process.Env)
	}
	if res.Spec.Hostname != "" {
		t.Errorf("spec hostname = %q, want none (the pod's UTS namespace has it)", res.Spec.Hostname)
	}
	in.Pod.Hostname = ""
	res = mustGenerate(t, g, in)
	if !slices.Contains(res.Spec.Process.Env, "HOSTNAME=node-1") {
		t.Errorf("env %q lacks the node's hostname for a pod without one", res.Spec.Process.Env)
	}
}

func TestWorkingDir(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ctr, img  string
		want      string
		wantError bool
	}{
		{name: "default", want: "/"},
		{name: "image", img: "/srv", want: "/srv"},
		{name: "container wins", ctr: "/work", img: "/srv", want: "/work"},
		{name: "relative container dir", ctr: "work", wantError: true},
		{name: "relative image dir", img: "srv", wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := workingDir(Container{WorkingDir: tc.ctr}, imagespec.ImageConfig{WorkingDir: tc.img})
			if tc.wantError {
				if !isInvalid(err) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("cwd = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestTerminal(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.TTY = true
	res := mustGenerate(t, g, in)
	if !res.Spec.Process.Terminal || !slices.Contains(res.Spec.Process.Env, "TERM=xterm") {
		t.Errorf("terminal = %v, env %q; want a terminal with TERM=xterm", res.Spec.Process.Terminal, res.Spec.Process.Env)
	}
}

func TestStopSignal(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"", "SIGTERM"},
		{"SIGTERM", "SIGTERM"},
		{"term", "SIGTERM"},
		{"SIGQUIT", "SIGQUIT"},
		{"9", "SIGKILL"},
		{"SIGRTMIN+3", "SIGRTMIN+3"},
	} {
		got, err := stopSignal(tc.raw)
		if err != nil || got != tc.want {
			t.Errorf("stopSignal(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
	for _, raw := range []string{"SIGNOPE", "0", "200"} {
		if _, err := stopSignal(raw); !isInvalid(err) {
			t.Errorf("stopSignal(%q): err = %v, want InvalidArgument", raw, err)
		}
	}
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Image.StopSignal = "SIGINT"
	if res := mustGenerate(t, g, in); res.StopSignal != "SIGINT" {
		t.Errorf("StopSignal = %q, want SIGINT", res.StopSignal)
	}
}
