package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/strictgate/strictgate/verdict"
)

func init() {
	register("explain", "explain for a person why flows are allowed or denied", runExplain)
}

func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("strictgate explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vf := bindVerdictFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: strictgate explain [--manifests PATH… | --kubeconfig FILE --context NAME] (--src … --dst … --port N | --flows FILE)")
		fmt.Fprintln(stderr, "\nExplains for a person why each flow is allowed or denied: which policies isolate")
		fmt.Fprintln(stderr, "each end and which rule admits the flow, or why none does.")
		fmt.Fprint(stderr, verdictSources)
		fmt.Fprintln(stderr, "\nExamples:\n  strictgate explain --src shop/frontend --dst shop/backend --port 9090")
		fmt.Fprintln(stderr, "  strictgate explain -n shop -l app=frontend --dst shop/backend-svc:80")
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if ok, err := parseFlags(fs, args); !ok {
		return err
	}
	o, err := vf.options(os.Stdin, stderr)
	if err != nil {
		return err
	}
	return verdict.Explain(ctx, o, stdout)
}
