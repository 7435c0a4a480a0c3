package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/strictgate/strictgate/verdict"
	_ "github.com/strictgate/strictgate/verdict/bpfengine" // --engine=bpf
)

func init() {
	register("verdict", "judge flows (JSON lines) against manifests: one JSON verdict per flow", runVerdict)
}

// listFlag collects a repeatable flag; commas separate values too.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// pathListFlag is a repeatable path flag. A value naming an existing file or directory
// is taken as is, even with commas in it (t.TempDir() names can contain them); other
// values are split on commas.
type pathListFlag []string

func (l *pathListFlag) String() string { return strings.Join(*l, ",") }
func (l *pathListFlag) Set(v string) error {
	if _, err := os.Stat(v); err == nil || !strings.Contains(v, ",") {
		*l = append(*l, v)
		return nil
	}
	return (*listFlag)(l).Set(v)
}

// verdictFlags are the flags verdict and explain share.
type verdictFlags struct {
	manifests     pathListFlag
	nodeIPs       listFlag
	flows, engine *string
}

func bindVerdictFlags(fs *flag.FlagSet) *verdictFlags {
	f := &verdictFlags{}
	fs.Var(&f.manifests, "manifests", "manifest file or directory (YAML/JSON, multi-document, kind: List); repeatable")
	f.flows = fs.String("flows", "", `flows as JSON lines {"src":"ns/pod"|IP,"dst":...,"port":N,"protocol":"TCP"}; - for stdin`)
	f.engine = fs.String("engine", "go", "go: the Go model of the datapath; bpf: the real eBPF program via BPF_PROG_TEST_RUN (root)")
	fs.Var(&f.nodeIPs, "node-ip", "address of the pods' node (traffic with it is always allowed); repeatable")
	return f
}

func (f *verdictFlags) options(stdin io.Reader, stderr io.Writer) (verdict.Options, error) {
	o := verdict.Options{Manifests: f.manifests, Engine: *f.engine, FlowsName: *f.flows,
		Warn: func(s string) { fmt.Fprintln(stderr, "warning:", s) }}
	if *f.flows == "-" {
		o.FlowsName, o.Flows = "stdin", stdin
	}
	for _, s := range f.nodeIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return o, fmt.Errorf("--node-ip %q: not an IP address", s)
		}
		o.NodeIPs = append(o.NodeIPs, a.Unmap())
	}
	return o, nil
}

func parseFlags(fs *flag.FlagSet, args []string) (bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	return true, nil
}

func runVerdict(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("strictgate verdict", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vf := bindVerdictFlags(fs)
	if ok, err := parseFlags(fs, args); !ok {
		return err
	}
	o, err := vf.options(os.Stdin, stderr)
	if err != nil {
		return err
	}
	return verdict.Run(ctx, o, stdout)
}
