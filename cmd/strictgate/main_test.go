package main

import (
	"slices"
	"testing"
)

func TestCommandLine(t *testing.T) {
	env := func(cniCommand string) func(string) string {
		return func(k string) string {
			if k == "CNI_COMMAND" {
				return cniCommand
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name       string
		args       []string
		cniCommand string
		want       []string
	}{
		{"runtime runs the plugin without arguments", nil, "ADD", []string{"cni"}},
		{"no arguments and no CNI_COMMAND is usage", nil, "", nil},
		{"arguments win over CNI_COMMAND", []string{"agent", "--mode=strict"}, "ADD", []string{"agent", "--mode=strict"}},
		{"plain sub-command", []string{"verdict"}, "", []string{"verdict"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := commandLine(tc.args, env(tc.cniCommand)); !slices.Equal(got, tc.want) {
				t.Fatalf("commandLine(%q, CNI_COMMAND=%q) = %q, want %q", tc.args, tc.cniCommand, got, tc.want)
			}
		})
	}
}
