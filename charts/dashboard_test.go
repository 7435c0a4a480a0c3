package charts

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestGrafanaDashboardConfigMap: the dashboard ConfigMap is off by default and, when
// enabled, carries the sidecar label (key and value configurable) and the dashboard file
// unchanged.
func TestGrafanaDashboardConfigMap(t *testing.T) {
	file, err := os.ReadFile("strictgate/dashboards/strictgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var wantDash map[string]any
	if err := json.Unmarshal(file, &wantDash); err != nil {
		t.Fatalf("dashboard file: %v", err)
	}
	dashboards := func(r *rendered) []*corev1.ConfigMap {
		var out []*corev1.ConfigMap
		for _, o := range r.byKind("ConfigMap") {
			if strings.HasSuffix(o.GetName(), "-dashboard") {
				out = append(out, one[corev1.ConfigMap](r, "ConfigMap", o.GetName()))
			}
		}
		return out
	}
	if got := dashboards(render(t, "sg", nil)); len(got) != 0 {
		t.Fatalf("default values render %d dashboard ConfigMaps, want none", len(got))
	}
	for _, tc := range []struct {
		name      string
		grafana   map[string]any
		key, val  string
		namespace string
	}{
		{"defaults", map[string]any{"enabled": true}, "grafana_dashboard", "1", testNamespace},
		{"custom label and namespace", map[string]any{"enabled": true, "label": "example.com/dashboard", "labelValue": "strictgate", "namespace": "monitoring"},
			"example.com/dashboard", "strictgate", "monitoring"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cms := dashboards(render(t, "sg", map[string]any{"dashboards": map[string]any{"grafana": tc.grafana}}))
			if len(cms) != 1 {
				t.Fatalf("%d dashboard ConfigMaps, want 1", len(cms))
			}
			cm := cms[0]
			if cm.Labels[tc.key] != tc.val || cm.Namespace != tc.namespace {
				t.Errorf("ConfigMap %s/%s labels %v: want %s=%q in %s", cm.Namespace, cm.Name, cm.Labels, tc.key, tc.val, tc.namespace)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(cm.Data["strictgate.json"]), &got); err != nil {
				t.Fatalf("dashboard in the ConfigMap is not JSON: %v", err)
			}
			if !reflect.DeepEqual(got, wantDash) {
				t.Error("dashboard in the ConfigMap differs from dashboards/strictgate.json")
			}
		})
	}
}

func TestGrafanaDashboardValuesSchemaRejects(t *testing.T) {
	h := helm(t)
	for _, tc := range []struct {
		name    string
		grafana map[string]any
		want    string
	}{
		{"enabled not a bool", map[string]any{"enabled": "yes"}, "enabled"},
		{"label value not a label value", map[string]any{"labelValue": "a b"}, "labelValue"},
		{"label key with spaces", map[string]any{"label": "grafana dashboard"}, "label"},
		{"namespace not a name", map[string]any{"namespace": "Monitoring"}, "namespace"},
		{"unknown key", map[string]any{"folder": "x"}, "folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Template(context.Background(), "strictgate", testNamespace, map[string]any{"dashboards": map[string]any{"grafana": tc.grafana}})
			if err == nil || !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("values %v: error %v, want a schema error naming %q", tc.grafana, err, tc.want)
			}
		})
	}
}
