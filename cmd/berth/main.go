// Command berth is the Berth CRI runtime daemon. The same binary is the
// container init that libcontainer re-executes ("berth init").
//
//	berth [flags]            serve CRI on --listen until SIGTERM/SIGINT; SIGHUP reloads the config
//	berth config [flags]     print the effective config (file + flags) as TOML
//	berth version            print the versions berth was built with
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/berth-runtime/berth/internal/containerops"
	"github.com/berth-runtime/berth/internal/libctinit"
	"github.com/berth-runtime/berth/internal/version"
)

func main() {
	// Must come first: as a container's init this process never returns here.
	libctinit.RunIfInit()
	if len(os.Args) > 1 && os.Args[1] == containerops.Command {
		os.Exit(containerops.Main(os.Args[2:])) // the pod monitors' libcontainer helper
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the command line and runs the subcommand; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: berth [flags] [config|version]\n\nBerth is a CRI container runtime for Kubernetes.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cmd := ""
	if rest := fs.Args(); len(rest) > 0 {
		cmd = rest[0]
		// Flags may also follow the subcommand: berth config --root /x.
		if err := fs.Parse(rest[1:]); err != nil {
			return 2
		}
		if len(fs.Args()) > 0 {
			fmt.Fprintf(stderr, "berth: unexpected arguments %q\n", fs.Args())
			return 2
		}
	}
	switch cmd {
	case "version":
		for _, c := range version.Components() {
			fmt.Fprintf(stdout, "%-36s %s\n", c.Name, c.Version)
		}
		fmt.Fprintf(stdout, "%-36s %s\n", "CRI API", version.CRIAPIVersion)
		return 0
	case "config", "":
		cfg, err := flags.Resolve()
		if err != nil {
			fmt.Fprintf(stderr, "berth: %v\n", err)
			return 1
		}
		if cmd == "config" {
			text, err := cfg.TOML()
			if err != nil {
				fmt.Fprintf(stderr, "berth: %v\n", err)
				return 1
			}
			fmt.Fprint(stdout, text)
			return 0
		}
		if err := serve(flags, cfg, stderr); err != nil {
			fmt.Fprintf(stderr, "berth: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "berth: unknown command %q (berth [flags] [config|version])\n", cmd)
		return 2
	}
}
