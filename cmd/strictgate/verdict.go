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

	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

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
	kube          *kubeFlags
	one           verdict.Flow
	srcSel        string
	dstSel        string
	namespace     string
}

const verdictSources = `
Objects come from --manifests (offline) or, without it, from a live cluster: --kubeconfig,
else $KUBECONFIG, else ~/.kube/config, else the in-cluster service account; --context
picks a context. Live mode reads Namespaces, Pods, NetworkPolicies, Services and
EndpointSlices and compiles them exactly as the agent does.

A flow is --flows FILE (JSON lines) or one flow from --src/--dst/--port/--protocol:
  --src, --dst       namespace/pod or an IP; --dst may be namespace/service:port (port by
                     number or name; --port may then be left out)
  -l, --src-selector label selector picking the source pod in -n NAMESPACE (exactly one)
  --dst-selector     the same for the destination pod
`

func bindVerdictFlags(fs *flag.FlagSet) *verdictFlags {
	f := &verdictFlags{}
	fs.Var(&f.manifests, "manifests", "manifest file or directory (YAML/JSON, multi-document, kind: List); repeatable; offline, instead of a live cluster")
	f.flows = fs.String("flows", "", `flows as JSON lines {"src":"ns/pod"|IP,"dst":"ns/pod"|IP|"ns/svc:port","port":N,"protocol":"TCP"}; - for stdin`)
	f.engine = fs.String("engine", "go", "go: the Go model of the datapath; bpf: the real eBPF program via BPF_PROG_TEST_RUN (root)")
	fs.Var(&f.nodeIPs, "node-ip", "address of the pods' node (traffic with it is always allowed); repeatable")
	f.kube = bindKubeFlags(fs)
	fs.StringVar(&f.one.Src, "src", "", "source of a single flow: namespace/pod or IP (instead of --flows)")
	fs.StringVar(&f.one.Dst, "dst", "", "destination of a single flow: namespace/pod, IP, or namespace/service:port")
	fs.IntVar(&f.one.Port, "port", 0, "destination port of the single flow")
	fs.StringVar(&f.one.Protocol, "protocol", "TCP", "protocol of the single flow: TCP, UDP, SCTP or ICMP")
	fs.StringVar(&f.srcSel, "src-selector", "", "label selector (app=frontend) picking the single flow's source pod in --namespace")
	fs.StringVar(&f.srcSel, "l", "", "short for --src-selector")
	fs.StringVar(&f.dstSel, "dst-selector", "", "label selector picking the single flow's destination pod in --namespace")
	fs.StringVar(&f.namespace, "namespace", "", "namespace of the selectors (default: the kubeconfig context's, or default)")
	fs.StringVar(&f.namespace, "n", "", "short for --namespace")
	return f
}

func (f *verdictFlags) options(stdin io.Reader, stderr io.Writer) (verdict.Options, error) {
	o := verdict.Options{Manifests: f.manifests, Engine: *f.engine, FlowsName: *f.flows,
		Warn: func(s string) { fmt.Fprintln(stderr, "warning:", s) }}
	if *f.flows == "-" {
		o.FlowsName, o.Flows = "stdin", stdin
	}
	single := f.one.Src != "" || f.one.Dst != "" || f.srcSel != "" || f.dstSel != ""
	if single {
		if *f.flows != "" {
			return o, fmt.Errorf("--flows and a single flow (--src/--dst/selectors) are mutually exclusive: pass one")
		}
		one := f.one
		o.Flow, o.Flows, o.FlowsName = &one, nil, ""
		o.SrcSelector, o.DstSelector, o.Namespace = f.srcSel, f.dstSel, f.namespace
	}
	switch {
	case len(f.manifests) > 0 && f.kube.set():
		return o, fmt.Errorf("--manifests (offline) and --kubeconfig/--context (live cluster) are mutually exclusive: pass one")
	case len(f.manifests) == 0:
		cs, rc, ns, err := f.kube.client()
		if errors.Is(err, errNoCluster) {
			return o, fmt.Errorf("no manifests and %w (or pass --manifests PATH to work offline)", err)
		}
		if err != nil {
			return o, fmt.Errorf("live cluster: %w", err)
		}
		o.Client = cs
		if o.ClusterPolicies, err = cnpclient.NewForConfig(rc); err != nil {
			return o, fmt.Errorf("live cluster: %w", err)
		}
		if o.Namespace == "" {
			o.Namespace = ns
		}
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
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: strictgate verdict [--manifests PATH… | --kubeconfig FILE --context NAME] (--flows FILE | --src … --dst … --port N)")
		fmt.Fprintln(stderr, "\nPrints one JSON verdict per flow, with the policies and rules that decided it.")
		fmt.Fprint(stderr, verdictSources)
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
	return verdict.Run(ctx, o, stdout)
}
