package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/strictgate/strictgate/certs"
	"github.com/strictgate/strictgate/webhook"
)

func init() {
	register("webhook", "run the admission webhook and the default-deny controller", runWebhook)
}

func runWebhook(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("strictgate webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := webhook.DefaultConfig()
	cfg.BindFlags(fs)
	config.RegisterFlags(fs) // --kubeconfig; in-cluster config when unset
	selfSigned := fs.String("self-signed-hosts", "", "comma-separated DNS names/IPs: create a self-signed CA and serving certificate in --cert-dir unless a usable one is there (development; prefer cert-manager)")
	verbosity := fs.Int("v", 0, "log verbosity (0 = info; higher is chattier)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// JSON logs on stderr. Handlers never log admitted objects or request bodies, so
	// Secrets or tokens inside them cannot leak through logs.
	logHandler := slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.Level(-*verbosity)})
	ctrl.SetLogger(logr.FromSlogHandler(logHandler))
	// The standard library's log package (net/http's TLS handshake and connection
	// errors) writes through slog's default too, so that every line is JSON.
	slog.SetDefault(slog.New(logHandler))
	if *selfSigned != "" {
		if _, renewed, err := certs.Ensure(cfg.CertDir, certs.Hosts(strings.Split(*selfSigned, ",")), 365*24*time.Hour, 30*24*time.Hour); err != nil {
			return fmt.Errorf("bootstrap serving certificate: %w", err)
		} else if renewed {
			ctrl.Log.Info("wrote a self-signed serving certificate; put ca.crt into the webhook configurations' caBundle", "dir", cfg.CertDir)
		}
	}
	rc, err := config.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	return webhook.Run(ctx, rc, cfg)
}
