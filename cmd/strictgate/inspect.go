package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/inspect"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/verdict"
)

func init() {
	register("inspect", "show what this node's kernel holds for its pods, and any drift from the policy (read-only; run in the agent pod)", runInspect)
}

func runInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("strictgate inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kf := bindKubeFlags(fs)
	all := fs.Bool("all", false, "every pod of this node, one table")
	output := fs.String("o", "text", "output: text or json")
	node := fs.String("node", os.Getenv("NODE_NAME"), "this node's name (env NODE_NAME, as in the agent pod)")
	pinRoot := fs.String("pin-root", contract.DefaultPinRoot, "bpffs directory of the datapath's pins")
	condTypes := contract.DefaultConditionTypes()
	fs.Var(contract.NewConditionTypesFlag(&condTypes), "condition-types", contract.ConditionTypesUsage+" (the agent's value; kubectl strictgate inspect passes it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: strictgate inspect [flags] NAMESPACE/POD | --all")
		fmt.Fprintln(stderr, `
Run inside the agent pod of the pod's node:
  kubectl -n strictgate exec ds/strictgate-agent -- strictgate inspect shop/backend
  (kubectl strictgate inspect shop/backend finds the right agent pod itself)

For a pod of this node it prints its host-side interface, how the programs are attached,
the mode (enforce or audit), the generation of its kernel entry, its condition, the rule
counts per direction in the kernel and computed now, and whether the kernel holds exactly
what the compiler computes now from the API server's objects (the agent's compile); drift
is listed as added (+, computed, not in the kernel) and removed (-, in the kernel, no
longer computed) entries. --all prints one table for every pod of the node. The exit
status is 0 even with drift; -o json gives in_sync per pod for scripts.

Read-only: the pinned maps are opened through read-only handles, nothing is written.
The cluster comes from the agent pod's service account (or --kubeconfig/--context).

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if *output != "text" && *output != "json" {
		return fmt.Errorf("-o %q: want text or json", *output)
	}
	var key types.NamespacedName
	switch {
	case *all && len(pos) > 0:
		return fmt.Errorf("--all and a pod are mutually exclusive: pass one")
	case !*all && len(pos) != 1:
		return fmt.Errorf("name one pod as NAMESPACE/POD, or pass --all (see -h)")
	case !*all:
		ns, name, ok := strings.Cut(pos[0], "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("%q: want NAMESPACE/POD", pos[0])
		}
		key = types.NamespacedName{Namespace: ns, Name: name}
	}
	if *node == "" {
		return fmt.Errorf("no node name: pass --node or set NODE_NAME (the agent pod has it)")
	}
	cs, _, _, err := kf.client()
	if err != nil {
		return err
	}
	dp, err := datapath.OpenReadOnly(*pinRoot)
	if err != nil {
		return err
	}
	defer dp.Close()
	m, err := verdict.FromCluster(ctx, cs)
	if err != nil {
		return err
	}
	in, err := inspect.New(*node, m.State, dp, netdev.New(nil))
	if err != nil {
		return err
	}
	in.Types = gate.TypesOf(condTypes)
	var reports []*inspect.Report
	if *all {
		if reports, err = in.All(); err != nil {
			return err
		}
	} else {
		r, err := in.Pod(key)
		if err != nil {
			return err
		}
		reports = []*inspect.Report{r}
	}
	switch {
	case *output == "json" && *all:
		return writeJSON(stdout, reports)
	case *output == "json":
		return writeJSON(stdout, reports[0])
	case *all:
		return inspect.WriteTable(stdout, reports)
	}
	return inspect.WriteText(stdout, reports[0])
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// parseInterspersed parses flags before and after positional arguments, as kubectl
// does (`inspect shop/backend -o json`), and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// flagErr turns -h into a clean exit.
func flagErr(err error) error {
	if err == flag.ErrHelp {
		return nil
	}
	return err
}
