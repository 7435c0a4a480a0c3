package hygiene

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics live in controller-runtime's registry, which the webhook's manager serves
// on /metrics.
var (
	rulesetHealthy = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "strictgate_hygiene_ruleset_healthy",
		Help: "1 when the rule set in force is the newest one on disk, 0 when the newest one failed to compile or test and the last good set is kept.",
	})
	rulesetReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strictgate_hygiene_ruleset_reload_total",
		Help: "Rule set loads by result: success, or failure (read, parse, compile or test error; see the webhook log).",
	}, []string{"result"})
	rulesetRules = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "strictgate_hygiene_ruleset_rules",
		Help: "Number of hygiene rules in the rule set in force.",
	})
	rulesetLoaded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "strictgate_hygiene_ruleset_last_success_timestamp_seconds",
		Help: "Unix time the rule set in force was loaded.",
	})
	findingsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strictgate_hygiene_findings_total",
		Help: "Hygiene findings by rule id and action; dry_run=\"true\" for dryRun admission requests, which have no other effect.",
	}, []string{"rule", "action", "dry_run"})
	evaluationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "strictgate_hygiene_evaluation_duration_seconds",
		Help:    "Time to gather cluster facts and evaluate the hygiene rules for one admission request.",
		Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
	}, []string{"dry_run"})
)

func init() {
	metrics.Registry.MustRegister(rulesetHealthy, rulesetReloads, rulesetRules, rulesetLoaded, findingsTotal, evaluationSeconds)
}

// CountFinding counts one finding in strictgate_hygiene_findings_total.
func CountFinding(f Finding, dryRun bool) {
	findingsTotal.WithLabelValues(f.ID, string(f.Action), boolLabel(dryRun)).Inc()
}

// ObserveEvaluation records one request's evaluation time.
func ObserveEvaluation(d time.Duration, dryRun bool) {
	evaluationSeconds.WithLabelValues(boolLabel(dryRun)).Observe(d.Seconds())
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
