package webhook

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/charts"
)

// testDashboardMetrics checks every webhook metric the chart's Grafana dashboard queries
// (the strictgate_webhook_ and strictgate_hygiene_ names; the agent's test checks the
// rest) against a scrape of the running webhook, so a panel naming a metric the webhook
// does not export fails. Runs after the other subtests made requests, so the labelled
// series exist.
func (e *env) testDashboardMetrics(t *testing.T) {
	all, err := charts.DashboardMetrics()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // metric -> a panel
	for id, panels := range all {
		if strings.HasPrefix(id, "strictgate_webhook_") || strings.HasPrefix(id, "strictgate_hygiene_") {
			want[id] = panels[0]
		}
	}
	if len(want) == 0 {
		t.Fatal("the dashboard queries no webhook metric")
	}
	resp, err := http.Get(e.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	types := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	for m, panel := range want {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && types[b] == "histogram" {
				base = b
			}
		}
		if types[base] == "" {
			t.Errorf("dashboard panel %q queries %s, which the webhook does not export", panel, m)
		}
	}
}
