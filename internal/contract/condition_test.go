package contract

import (
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestValidateConditionTypes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		types []string
		want  string // substring of the error; "" = valid
	}{
		{"default", DefaultConditionTypes(), ""},
		{"two", []string{ConditionType, "networking.k8s.io/pod-network-ready"}, ""},
		{"unprefixed name", []string{"PodNetworkReady"}, ""},
		{"none", nil, "at least one"},
		{"empty name", []string{""}, `"" is not a valid condition type`},
		{"space", []string{"strictgate.dev/policy programmed"}, "not a valid condition type"},
		{"bad prefix", []string{"Strictgate_dev/x"}, "not a valid condition type"},
		{"quote would break CEL", []string{"a'b"}, "not a valid condition type"},
		{"too long", []string{"strictgate.dev/" + strings.Repeat("a", 64)}, "not a valid condition type"},
		{"kubelet's", []string{"Ready"}, "owned by the kubelet"},
		{"duplicate", []string{ConditionType, "x.io/y", ConditionType}, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateConditionTypes(tc.types)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("ValidateConditionTypes(%q) = %v, want nil", tc.types, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("ValidateConditionTypes(%q) = %v, want an error containing %q", tc.types, err, tc.want)
			}
		})
	}
}

func TestConditionTypesFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"default kept", nil, []string{ConditionType}, ""},
		{"replaces default", []string{"-c=x.io/a"}, []string{"x.io/a"}, ""},
		{"comma separated", []string{"-c= x.io/a ,x.io/b"}, []string{"x.io/a", "x.io/b"}, ""},
		{"repeatable", []string{"-c=x.io/a", "-c=" + ConditionType}, []string{"x.io/a", ConditionType}, ""},
		{"empty refused", []string{"-c="}, []string{ConditionType}, "not a valid condition type"},
		{"trailing comma refused", []string{"-c=x.io/a,"}, []string{ConditionType}, "not a valid condition type"},
		{"duplicate across uses refused", []string{"-c=x.io/a", "-c=x.io/a"}, []string{"x.io/a"}, "listed twice"},
		{"kubelet's refused", []string{"-c=ContainersReady"}, []string{ConditionType}, "owned by the kubelet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := DefaultConditionTypes()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			fs.Var(NewConditionTypesFlag(&dst), "c", ConditionTypesUsage)
			err := fs.Parse(tc.args)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Parse(%q) = %v, want error %q", tc.args, err, tc.wantErr)
			}
			// Bad input changes nothing.
			if !slices.Equal(dst, tc.want) {
				t.Fatalf("after Parse(%q): %q, want %q", tc.args, dst, tc.want)
			}
		})
	}
}
