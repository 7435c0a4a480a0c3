package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestInspectArgs: bad invocations fail before anything is opened, saying what to pass.
func TestInspectArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect"}, "name one pod as NAMESPACE/POD, or pass --all"},
		{[]string{"inspect", "--all", "shop/backend"}, "--all and a pod are mutually exclusive"},
		{[]string{"inspect", "backend"}, `"backend": want NAMESPACE/POD`},
		{[]string{"inspect", "shop/backend", "-o", "yaml"}, `-o "yaml": want text or json`},
		{[]string{"inspect", "shop/backend", "--node", ""}, "no node name: pass --node or set NODE_NAME"},
		{[]string{"inspect", "shop/a", "shop/b"}, "name one pod"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %q", tc.args, code, stdout.String(), stderr.String(), tc.want)
		}
	}
}
