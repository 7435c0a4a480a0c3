package webhook

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestConfigFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(*Config) bool
		wantErr string
	}{
		{"defaults are valid", nil, func(c *Config) bool {
			return c.Namespace == "strictgate" && slices.Equal(c.OptOutGroups, []string{DefaultOptOutGroup}) && c.DNSPolicy
		}, ""},
		{"opt-out groups replace the default", []string{"--opt-out-group=a,b", "--opt-out-group", "c"}, func(c *Config) bool {
			return slices.Equal(c.OptOutGroups, []string{"a", "b", "c"})
		}, ""},
		{"excluded namespaces", []string{"--exclude-namespace=x", "--exclude-namespace= y ,"}, func(c *Config) bool {
			return slices.Equal(c.ExcludedNamespaces, []string{"x", "y"}) && !c.Scope().Enforced(nsNamed("y"))
		}, ""},
		{"dns pod labels", []string{"--dns-namespace=dns", "--dns-pod-labels=app=coredns, tier=dns"}, func(c *Config) bool {
			return c.DNSNamespace == "dns" && len(c.DNSPodLabels) == 2 && c.DNSPodLabels["app"] == "coredns" && c.DNSPodLabels["tier"] == "dns"
		}, ""},
		{"default-deny on by default, no selector", nil, func(c *Config) bool { return c.DefaultDeny && c.NamespaceSelector == nil }, ""},
		{"default-deny off", []string{"--default-deny=false"}, func(c *Config) bool { return !c.DefaultDeny }, ""},
		{"namespace selector as the chart passes it", []string{`--namespace-selector={"matchExpressions":[{"key":"env","operator":"In","values":["prod"]}]}`}, func(c *Config) bool {
			return c.Scope().Enforced(nsNamed("a", "env", "prod")) && !c.Scope().Enforced(nsNamed("a", "env", "dev")) && !c.Scope().Enforced(nsNamed("a"))
		}, ""},
		{"dns namespace empty", []string{"--dns-namespace="}, nil, "--dns-namespace"},
		{"bad service account", []string{"--service-account=webhook"}, nil, "--service-account"},
		{"bad port", []string{"--port=0"}, nil, "--port"},
		{"hygiene default action is deny", nil, func(c *Config) bool { return c.Hygiene.DefaultAction == "deny" }, ""},
		{"hygiene default action warn", []string{"--hygiene-default-action=Warn"}, func(c *Config) bool { return c.Hygiene.DefaultAction == "warn" }, ""},
		{"hygiene rules judged by CEL", []string{"--hygiene-cel-rules=SG001-open-rule, SG002-any-cidr,"}, func(c *Config) bool {
			return slices.Equal(c.Hygiene.CELRules, []string{"SG001-open-rule", "SG002-any-cidr"})
		}, ""},
		{"condition types default", nil, func(c *Config) bool {
			return slices.Equal(c.ConditionTypes, []string{"strictgate.dev/policy-programmed"})
		}, ""},
		{"condition types as the chart passes them", []string{"--condition-types=strictgate.dev/policy-programmed,networking.k8s.io/pod-network-ready"}, func(c *Config) bool {
			return slices.Equal(c.ConditionTypes, []string{"strictgate.dev/policy-programmed", "networking.k8s.io/pod-network-ready"})
		}, ""},
		{"max connections", []string{"--max-connections=10"}, func(c *Config) bool { return c.MaxConnections == 10 }, ""},
		{"no connections", []string{"--max-connections=0"}, nil, "--max-connections"},
		{"empty namespace", []string{"--namespace="}, nil, "--namespace"},
		{"lease shorter than renew deadline", []string{"--leader-lease-duration=5s"}, nil, "--leader-renew-deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate = %v, want error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(&c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

// TestConditionTypesFlagRefused: a bad --condition-types fails flag parsing, naming
// the flag and the entry.
func TestConditionTypesFlagRefused(t *testing.T) {
	for _, arg := range []string{"--condition-types=", "--condition-types=a b", "--condition-types=x.io/a,x.io/a", "--condition-types=Ready"} {
		c := DefaultConfig()
		fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.BindFlags(fs)
		err := fs.Parse([]string{arg})
		if err == nil || !strings.Contains(err.Error(), "condition-types") || !strings.Contains(err.Error(), "condition type") {
			t.Errorf("Parse(%s) = %v, want an error naming --condition-types", arg, err)
		}
		if !slices.Equal(c.ConditionTypes, []string{"strictgate.dev/policy-programmed"}) {
			t.Errorf("Parse(%s) changed the types to %q", arg, c.ConditionTypes)
		}
	}
}
