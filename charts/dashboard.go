package charts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DashboardPath is the chart's Grafana dashboard, shipped by templates/dashboards.yaml.
func DashboardPath() string { return filepath.Join(Dir(), "dashboards", "strictgate.json") }

var metricIdent = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// DashboardMetrics returns every strictgate metric (names starting strictgate_ or
// network_policy_) the chart's dashboard queries, each with the titles of the panels that
// query it. The agent's and the webhook's tests check these names against scrapes of the
// running components, so a panel cannot name a metric nothing exports. A panel without a
// query, or whose query names no strictgate metric, is an error: it could never show data.
func DashboardMetrics() (map[string][]string, error) {
	b, err := os.ReadFile(DashboardPath())
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard JSON: %w", err)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			return nil, fmt.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			found := false
			for _, id := range metricIdent.FindAllString(tg.Expr, -1) {
				if strings.HasPrefix(id, "strictgate_") || strings.HasPrefix(id, "network_policy_") {
					out[id] = append(out[id], p.Title)
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("dashboard panel %q: query %q names no strictgate metric", p.Title, tg.Expr)
			}
		}
	}
	return out, nil
}
