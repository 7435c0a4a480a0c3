package main

import (
	"context"
	"flag"
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
	var one verdict.Flow
	fs.StringVar(&one.Src, "src", "", "source of a single flow: namespace/pod or IP (instead of --flows)")
	fs.StringVar(&one.Dst, "dst", "", "destination of a single flow: namespace/pod or IP")
	fs.IntVar(&one.Port, "port", 0, "destination port of the single flow")
	fs.StringVar(&one.Protocol, "protocol", "TCP", "protocol of the single flow: TCP, UDP, SCTP or ICMP")
	if ok, err := parseFlags(fs, args); !ok {
		return err
	}
	o, err := vf.options(os.Stdin, stderr)
	if err != nil {
		return err
	}
	if one.Src != "" || one.Dst != "" {
		o.Flow, o.Flows, o.FlowsName = &one, nil, ""
	}
	return verdict.Explain(ctx, o, stdout)
}
