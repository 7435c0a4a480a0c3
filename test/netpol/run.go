package netpol

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Focus selects every spec of the suite: `[sig-network] Netpol`, `Netpol API` and
// `Netpol [LinuxOnly]` (UDP, SCTP).
const Focus = `\[sig-network\] Netpol`

// SCTPSkip skips the specs that need SCTP connectivity (the kernel's sctp module).
const SCTPSkip = `\[Feature:SCTPConnectivity\]`

// RunOptions says how to run the suite.
type RunOptions struct {
	Kubeconfig string
	// Kubectl is a kubectl of the cluster's version (the framework's failure dumps use it).
	Kubectl string
	// Focus and Skip are Ginkgo regular expressions over the full spec text.
	Focus, Skip string
	// ReportDir receives junit_01.xml (emptied first).
	ReportDir string
	// Out receives the suite's own output as it runs; nil discards it.
	Out io.Writer
	// Timeout bounds the whole run (Ginkgo's suite timeout); default 3h.
	Timeout time.Duration
	// Procs > 1 runs the specs in that many parallel processes (through Ginkgo's CLI).
	// The suite's specs are independent (each makes namespaces of its own); on a
	// 2-core node more than 3 makes the suite's 3-second probes time out.
	Procs int
}

// Run runs the suite and returns its parsed JUnit report. A failing spec is not an
// error (the Report says which failed); a suite that could not run or wrote no report is.
func (s Suite) Run(ctx context.Context, o RunOptions) (*Report, error) {
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Hour
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if err := os.RemoveAll(o.ReportDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.ReportDir, 0o755); err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + o.Kubeconfig,
		"--provider=local",
		"--report-dir=" + o.ReportDir,
		"--e2e-output-dir=" + o.ReportDir,
	}
	if o.Kubectl != "" {
		args = append(args, "--kubectl-path="+o.Kubectl)
	}
	ginkgo := []string{"focus=" + o.Focus, "timeout=" + o.Timeout.String(), "no-color", "v"}
	if o.Skip != "" {
		ginkgo = append(ginkgo, "skip="+o.Skip)
	}
	bin := s.Binary
	if o.Procs > 1 {
		// Ginkgo's CLI runs the binary in o.Procs processes and hands each its share
		// of the specs; the framework's report (written by process 1) covers them all.
		cli := []string{fmt.Sprintf("--procs=%d", o.Procs)}
		for _, g := range ginkgo {
			cli = append(cli, "--"+g)
		}
		args = append(append(cli, s.Binary, "--"), args...)
		bin = s.Ginkgo
	} else {
		for _, g := range ginkgo {
			args = append(args, "--ginkgo."+g)
		}
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = o.ReportDir
	// The framework falls back to $KUBECONFIG in places; point it at the same cluster.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+o.Kubeconfig)
	cmd.Stdout, cmd.Stderr = o.Out, o.Out
	runErr := cmd.Run()
	took := time.Since(start)
	junit := filepath.Join(o.ReportDir, "junit_01.xml")
	r, err := ParseJUnitFile(junit)
	if err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("run %s: %w; and no report: %v", filepath.Base(s.Binary), runErr, err)
		}
		return nil, err
	}
	r.Took = took
	if err := r.keepMatching(o.Focus); err != nil {
		return nil, err
	}
	var exit *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exit) {
		return r, fmt.Errorf("run %s: %w", filepath.Base(s.Binary), runErr)
	}
	if runErr != nil && r.Failed() == 0 {
		// The suite failed without a failed spec in its report (a suite node such as
		// the set-up failed, or it was interrupted): that is a failed run too.
		return r, fmt.Errorf("%s exited with %v but its report has no failed spec (see %s)", filepath.Base(s.Binary), runErr, o.ReportDir)
	}
	return r, nil
}

// State is a spec's outcome.
type State string

// The outcomes a row of CONFORMANCE.md shows.
const (
	Passed  State = "passed"
	Failed  State = "failed"
	Skipped State = "skipped"
)

// Spec is one spec's result.
type Spec struct {
	// Name is the full spec text, e.g. "[sig-network] Netpol NetworkPolicy between
	// server and client should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]".
	Name     string
	State    State
	Duration time.Duration
	// Status is Ginkgo's own (passed, failed, skipped, pending, panicked, timedout, ...).
	Status string
	// Failure is the failure text; Log the spec's captured output (failed specs only:
	// the framework's JUnit omits the output of passed and skipped specs).
	Failure, Log string
}

// Report is a parsed JUnit report of one run.
type Report struct {
	// Specs are the suite's specs in name order; SuiteNodes are Ginkgo's suite-level
	// entries ([SynchronizedBeforeSuite], [ReportAfterSuite] ...), kept apart because a
	// failing one fails the run without being a spec.
	Specs, SuiteNodes []Spec
	// Took is the wall-clock time of the whole run.
	Took time.Duration
}

func (r *Report) count(s State) int {
	n := 0
	for _, sp := range r.Specs {
		if sp.State == s {
			n++
		}
	}
	return n
}

// Passed, Failed and Skipped count specs; Failed includes failed suite nodes.
func (r *Report) Passed() int  { return r.count(Passed) }
func (r *Report) Skipped() int { return r.count(Skipped) }
func (r *Report) Failed() int {
	n := r.count(Failed)
	for _, s := range r.SuiteNodes {
		if s.State == Failed {
			n++
		}
	}
	return n
}

// Ran lists the specs that ran (passed or failed).
func (r *Report) Ran() []Spec {
	var out []Spec
	for _, s := range r.Specs {
		if s.State != Skipped {
			out = append(out, s)
		}
	}
	return out
}

// Failures lists failed specs and suite nodes.
func (r *Report) Failures() []Spec {
	var out []Spec
	for _, s := range append(append([]Spec{}, r.SuiteNodes...), r.Specs...) {
		if s.State == Failed {
			out = append(out, s)
		}
	}
	return out
}

type junitSuites struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string     `xml:"name,attr"`
	Status    string     `xml:"status,attr"`
	Time      string     `xml:"time,attr"`
	Skipped   *junitText `xml:"skipped"`
	Failure   *junitText `xml:"failure"`
	Error     *junitText `xml:"error"`
	SystemErr string     `xml:"system-err"`
	SystemOut string     `xml:"system-out"`
}

type junitText struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// ParseJUnitFile parses a Ginkgo JUnit report (the framework's junit_01.xml).
func ParseJUnitFile(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read junit report: %w", err)
	}
	return ParseJUnit(b)
}

// ParseJUnit parses a Ginkgo JUnit report.
func ParseJUnit(b []byte) (*Report, error) {
	var s junitSuites
	if err := xml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse junit report: %w", err)
	}
	if len(s.Suites) == 0 {
		return nil, errors.New("parse junit report: no <testsuite>")
	}
	r := &Report{}
	for _, su := range s.Suites {
		for _, c := range su.Cases {
			// Ginkgo prefixes a spec's name with its node type: "[It] [sig-network] ...".
			sp := Spec{Name: strings.TrimPrefix(strings.TrimSpace(c.Name), "[It] "), Status: c.Status}
			if sec, err := strconv.ParseFloat(c.Time, 64); err == nil {
				sp.Duration = time.Duration(sec * float64(time.Second))
			}
			switch {
			case c.Failure != nil || c.Error != nil:
				sp.State = Failed
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				sp.State = Skipped
			case c.Status == "passed" || c.Status == "":
				sp.State = Passed
			default:
				sp.State = Failed
			}
			for _, t := range []*junitText{c.Failure, c.Error} {
				if t != nil {
					sp.Failure = strings.TrimSpace(strings.TrimSpace(t.Message) + "\n" + strings.TrimSpace(t.Text))
				}
			}
			sp.Log = c.SystemErr
			if sp.Log == "" {
				sp.Log = c.SystemOut
			}
			if isSuiteNode(sp.Name) {
				r.SuiteNodes = append(r.SuiteNodes, sp)
			} else {
				r.Specs = append(r.Specs, sp)
			}
		}
	}
	sort.SliceStable(r.Specs, func(i, j int) bool { return r.Specs[i].Name < r.Specs[j].Name })
	return r, nil
}

// keepMatching drops the specs the focus did not select: a binary with more specs than
// the netpol ones reports every other one as skipped.
func (r *Report) keepMatching(focus string) error {
	if focus == "" {
		return nil
	}
	re, err := regexp.Compile(focus)
	if err != nil {
		return fmt.Errorf("focus %q: %w", focus, err)
	}
	kept := r.Specs[:0]
	for _, s := range r.Specs {
		if re.MatchString(s.Name) {
			kept = append(kept, s)
		}
	}
	r.Specs = kept
	return nil
}

// isSuiteNode tells Ginkgo's suite-level report entries from specs: they are named
// after the node type in brackets, e.g. "[SynchronizedBeforeSuite]".
func isSuiteNode(name string) bool {
	for _, n := range []string{"[BeforeSuite]", "[AfterSuite]", "[SynchronizedBeforeSuite]", "[SynchronizedAfterSuite]", "[ReportBeforeSuite]", "[ReportAfterSuite]", "[DeferCleanup (Suite)]"} {
		if strings.HasPrefix(name, n) {
			return true
		}
	}
	return false
}
