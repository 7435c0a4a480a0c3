package flagutil

import (
	"flag"
	"slices"
	"testing"
)

func TestStringList(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"default kept", nil, []string{"d"}},
		{"first set replaces default", []string{"-l=a"}, []string{"a"}},
		{"repeatable", []string{"-l=a", "-l=b"}, []string{"a", "b"}},
		{"comma separated, blanks dropped", []string{"-l= a, ,b ,"}, []string{"a", "b"}},
		{"empty value clears", []string{"-l="}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []string{"d"}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.Var(NewStringList(&dst), "l", "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dst, tc.want) {
				t.Errorf("got %q, want %q", dst, tc.want)
			}
		})
	}
}
