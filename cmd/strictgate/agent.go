package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"

	"github.com/go-logr/logr"

	"github.com/strictgate/strictgate/agent"
)

func init() {
	register("agent", "run the node agent: compile NetworkPolicy, program eBPF, set the readiness gate", runAgent)
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("strictgate agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := agent.DefaultConfig()
	cfg.RegisterFlags(fs)
	verbosity := fs.Int("v", 0, "log verbosity (0 = info; higher is chattier)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	// Diagnostics go to stderr as JSON; stdout carries only the policy event log.
	log := logr.FromSlogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.Level(-*verbosity)}))
	return agent.Main(ctx, cfg, stdout, log)
}
