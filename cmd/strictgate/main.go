// Command strictgate is the one binary of the project. Each sub-command lives in its
// own file of this package and registers itself in init; this file only dispatches.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// command is one sub-command. run gets the arguments after the sub-command's name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// register adds a sub-command; called from init in the sub-command's file.
func register(name, summary string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	if _, dup := commands[name]; dup {
		panic("strictgate: sub-command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "strictgate makes Kubernetes pod start-up fail-closed with respect to NetworkPolicy.")
	fmt.Fprintln(w, "\nUsage: strictgate <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'strictgate <command> -h' for a command's flags.")
}

func main() {
	os.Exit(run(commandLine(os.Args[1:], os.Getenv), os.Stdout, os.Stderr))
}

// commandLine is the sub-command and its arguments. Container runtimes execute
// /opt/cni/bin/strictgate without arguments, the CNI verb in CNI_COMMAND: that is
// `strictgate cni`.
func commandLine(args []string, getenv func(string) string) []string {
	if len(args) == 0 && getenv("CNI_COMMAND") != "" {
		return []string{"cni"}
	}
	return args
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "strictgate: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "strictgate %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
