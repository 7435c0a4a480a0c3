package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics serves /metrics from reg, /healthz, and /readyz once the agent is ready
// (caches synced, start-up reconcile done), until ctx ends.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, a *Agent) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-a.Ready():
			fmt.Fprintln(w, "ok")
		default:
			http.Error(w, "starting: caches syncing or start-up reconcile running", http.StatusServiceUnavailable)
		}
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error(err, "metrics server")
		}
	}()
	context.AfterFunc(ctx, func() { srv.Close() })
	return srv, nil
}
