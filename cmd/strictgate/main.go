// Command strictgate is the one binary of the project. Each sub-command lives in its
// own file of this package and registers itself in init; this file only dispatches.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// command is one sub-command. run gets the arguments after the sub-command's name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// pluginCommands are what the binary answers when installed as the kubectl plugin
// kubectl-strictgate (`kubectl strictgate <command>`).
var pluginCommands = map[string]command{}

// pluginName is the binary's name as a kubectl plugin (make install-plugin).
const pluginName = "kubectl-strictgate"

// registerPlugin adds a command of the kubectl plugin; called from init.
func registerPlugin(name, summary string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	if _, dup := pluginCommands[name]; dup {
		panic("strictgate: plugin command registered twice: " + name)
	}
	pluginCommands[name] = command{summary: summary, run: run}
}

// register adds a sub-command; called from init in the sub-command's file.
func register(name, summary string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	if _, dup := commands[name]; dup {
		panic("strictgate: sub-command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func usage(w io.Writer, prog string, cmds map[string]command) {
	fmt.Fprintln(w, "strictgate makes Kubernetes pod start-up fail-closed with respect to NetworkPolicy.")
	fmt.Fprintf(w, "\nUsage: %s <command> [flags]\n\nCommands:\n", prog)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags.\n", prog)
}

func main() {
	if isPlugin(os.Args[0]) {
		os.Exit(dispatch("kubectl strictgate", pluginCommands, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(run(commandLine(os.Args[1:], os.Getenv), os.Stdout, os.Stderr))
}

// isPlugin reports whether the binary runs as the kubectl plugin: kubectl executes
// kubectl-strictgate found on PATH for `kubectl strictgate`.
func isPlugin(argv0 string) bool {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	return base == pluginName
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
	return dispatch("strictgate", commands, args, stdout, stderr)
}

func dispatch(prog string, cmds map[string]command, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout, prog, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
		usage(stderr, prog, cmds)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", prog, args[0], err)
		return 1
	}
	return 0
}
