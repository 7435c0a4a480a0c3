// Command conformance is `make conformance`: it builds the upstream netpol e2e suite and
// agnhost, runs every `[sig-network] Netpol` spec against strictgate on the one-node
// cluster once per address family (IPv4 primary, then IPv6 primary), writes
// CONFORMANCE.md and exits non-zero when a spec failed, printing each failure's
// reachability difference.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/netpol"
)

func main() {
	families := flag.String("families", "ipv4,ipv6", "address families to run the suite in, in order (ipv4: the cluster as it is; ipv6: the cluster restarted IPv6-primary)")
	focus := flag.String("focus", netpol.Focus, "Ginkgo focus regular expression")
	skip := flag.String("skip", "", "Ginkgo skip regular expression, besides the SCTP specs when SCTP is unavailable")
	out := flag.String("out", "", "the report to write (default CONFORMANCE.md at the repository root; - for stdout)")
	noInstall := flag.Bool("no-install", false, "run against the cluster without strictgate (checks the suite itself; isolating specs must fail)")
	keep := flag.Bool("keep", false, "leave strictgate installed after the last run")
	quiet := flag.Bool("quiet", false, "do not stream the suite's output (it is in the report directory)")
	procs := flag.Int("procs", 2, "parallel suite processes (1: serial)")
	valuesFile := flag.String("values", "", "chart values file to install strictgate with instead of "+netpol.ValuesFile)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, strings.Split(*families, ","), *focus, *skip, *out, *noInstall, *keep, *quiet, *procs, *valuesFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(ctx context.Context, families []string, focus, skip, out string, noInstall, keep, quiet bool, procs int, valuesFile string) (int, error) {
	start := time.Now()
	cfg, err := cluster.DefaultConfig()
	if err != nil {
		return 1, err
	}
	root := filepath.Dir(filepath.Dir(cfg.ToolsDir))
	if out == "" {
		out = filepath.Join(root, "CONFORMANCE.md")
	}
	suite, err := netpol.Build(ctx, cfg.ToolsDir, cfg.CacheDir, os.Stderr)
	if err != nil {
		return 1, err
	}
	sctpOK, sctpWhy := netpol.SCTP(ctx)
	fmt.Fprintf(os.Stderr, "conformance: SCTP %s\n", sctpWhy)
	if !sctpOK {
		skip = joinSkip(skip, netpol.SCTPSkip)
	}
	values, vals, err := netpol.Values()
	shownFile := netpol.ValuesFile
	if valuesFile != "" {
		values, vals, err = netpol.ValuesFrom(valuesFile)
		shownFile = valuesFile
	}
	if err != nil {
		return 1, err
	}
	doc := netpol.Document{
		KubernetesVersion: suite.KubernetesVersion,
		StrictgateVersion: gitDescribe(root),
		Date:              time.Now(),
		Suite:             suite.Description(),
		ValuesFile:        shownFile,
		Values:            values,
		SCTP:              sctpWhy,
		Command:           "make conformance",
	}
	if noInstall {
		doc.ValuesFile, doc.Values = "(none: -no-install, strictgate not installed)", "# strictgate was not installed for this run"
	}
	restore := false
	for _, fam := range families {
		fam = strings.TrimSpace(fam)
		fr := netpol.FamilyRun{Family: map[string]string{"ipv4": "IPv4", "ipv6": "IPv6"}[fam]}
		c := cfg
		switch fam {
		case "ipv4":
			c.IPv6Primary = false
		case "ipv6":
			if !cfg.DualStack() {
				fr.Err = fmt.Errorf("the cluster is not dual-stack on this machine (no global IPv6 address, or STRICTGATE_CLUSTER_IPV6=0)")
				doc.Runs = append(doc.Runs, fr)
				continue
			}
			c.IPv6Primary, restore = true, true
		default:
			return 2, fmt.Errorf("-families: unknown family %q (want ipv4, ipv6)", fam)
		}
		fr.Cluster = clusterDescription(c)
		var log io.Writer = os.Stderr
		if quiet {
			log = io.Discard
		}
		reportDir := filepath.Join(cfg.CacheDir, "conformance", fam)
		fmt.Fprintf(os.Stderr, "conformance: %s run: cluster %s (waiting for exclusive use of it)\n", fr.Family, fr.Cluster)
		fr.Err = cluster.WithExclusiveLock(c, 2*time.Hour, func() error {
			cl, err := cluster.Up(ctx, c, os.Stderr)
			if err != nil {
				return err
			}
			fr.Report, err = netpol.OnCluster(ctx, cl, suite, netpol.ClusterOptions{
				Focus: focus, Skip: skip, ReportDir: reportDir, NoInstall: noInstall, Keep: keep, Log: log, Procs: procs, Values: vals,
			})
			return err
		})
		if fr.Report != nil {
			fmt.Fprintf(os.Stderr, "conformance: %s: %d passed, %d failed, %d skipped in %s (report %s)\n", fr.Family,
				fr.Report.Passed(), fr.Report.Failed(), fr.Report.Skipped(), fr.Report.Took.Round(time.Second), reportDir)
		}
		if fr.Err != nil {
			fmt.Fprintf(os.Stderr, "conformance: %s run: %v\n", fr.Family, fr.Err)
		}
		doc.Runs = append(doc.Runs, fr)
		if ctx.Err() != nil {
			break
		}
	}
	if restore {
		// Leave the cluster as everyone else expects it: IPv4 primary.
		fmt.Fprintln(os.Stderr, "conformance: restarting the cluster IPv4-primary")
		rctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
		err := cluster.WithExclusiveLock(cfg, 2*time.Hour, func() error {
			_, err := cluster.Up(rctx, cfg, os.Stderr)
			return err
		})
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "conformance: restore the IPv4-primary cluster: %v\n", err)
		}
	}

	doc.Took = time.Since(start)
	var buf bytes.Buffer
	if err := netpol.WriteMarkdown(&buf, doc); err != nil {
		return 1, err
	}
	if out == "-" {
		os.Stdout.Write(buf.Bytes())
	} else if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return 1, err
	} else {
		fmt.Fprintf(os.Stderr, "conformance: wrote %s\n", out)
	}

	code := 0
	for _, r := range doc.Runs {
		if r.Err != nil {
			code = 1
		}
		if r.Report == nil {
			continue
		}
		for _, f := range r.Report.Failures() {
			code = 1
			fmt.Fprintf(os.Stderr, "\nFAIL [%s] %s\n%s\n", r.Family, f.Name, indent(netpol.FailureSummary(f)))
		}
		if len(r.Report.Ran()) == 0 {
			code = 1
			fmt.Fprintf(os.Stderr, "conformance: %s: no spec ran (focus %q)\n", r.Family, focus)
		}
	}
	if code == 0 {
		fmt.Fprintln(os.Stderr, "conformance: every spec that ran passed")
	}
	return code, nil
}

func joinSkip(a, b string) string {
	if a == "" {
		return b
	}
	return a + "|" + b
}

func clusterDescription(c cluster.Config) string {
	if !c.DualStack() {
		return "IPv4 only"
	}
	return "dual-stack, " + map[string]string{"ipv4": "IPv4", "ipv6": "IPv6"}[c.PrimaryFamily()] + " primary"
}

func gitDescribe(dir string) string {
	out, err := exec.Command("git", "-C", dir, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
