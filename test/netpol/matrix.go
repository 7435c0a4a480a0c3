package netpol

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Matrix is a reachability truth table as the suite prints it (from pod → to pod:
// '.' connected, 'X' blocked, '?' unknown).
type Matrix struct {
	Froms, Tos []string
	Marks      map[string]map[string]string
}

// Mismatch is one pair where the observed reachability differs from the expected.
type Mismatch struct {
	From, To           string
	Expected, Observed string // "allowed", "blocked" or "unknown"
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s -> %s: expected %s, observed %s", m.From, m.To, m.Expected, m.Observed)
}

// Diff is the reachability difference of a failed spec: the last expected and observed
// matrices the suite printed before it failed, and the pairs where they differ.
type Diff struct {
	Summary            string // the suite's "reachability: correct:N, incorrect:M" line
	Expected, Observed Matrix
	Mismatches         []Mismatch
}

var (
	// The framework logs (klog) "I1203 12:57:06.566822 29365 reachability.go:180] expected:"
	// and then the table after blank lines.
	tableMarker = regexp.MustCompile(`(?:^|[\s\]])(expected|observed|comparison):\s*$`)
	summaryLine = regexp.MustCompile(`reachability: correct:\d+, incorrect:\d+, result=\w+`)
)

// MatrixDiff finds the reachability matrices in a failed spec's log and compares them.
// ok is false when the log has none (the spec failed for another reason).
func MatrixDiff(log string) (d Diff, ok bool) {
	lines := strings.Split(strings.ReplaceAll(log, "\r\n", "\n"), "\n")
	tables := map[string][]string{}
	for i := 0; i < len(lines); i++ {
		if m := summaryLine.FindString(lines[i]); m != "" {
			d.Summary = m
		}
		m := tableMarker.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		var rows []string
		j := i + 1
		for ; j < len(lines) && strings.TrimSpace(lines[j]) == ""; j++ {
		}
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != ""; j++ {
			rows = append(rows, lines[j])
		}
		tables[m[1]] = rows // a later table (second try) replaces an earlier one
		i = j - 1
	}
	exp, okE := parseMatrix(tables["expected"])
	obs, okO := parseMatrix(tables["observed"])
	if !okE || !okO {
		return Diff{}, false
	}
	d.Expected, d.Observed = exp, obs
	word := map[string]string{".": "allowed", "X": "blocked"}
	name := func(mark string) string {
		if w, ok := word[mark]; ok {
			return w
		}
		return "unknown"
	}
	for _, f := range exp.Froms {
		for _, t := range exp.Tos {
			if f == t {
				continue // the suite ignores a pod's traffic to itself (hairpin) too
			}
			e, o := exp.Marks[f][t], obs.Marks[f][t]
			if e != o {
				d.Mismatches = append(d.Mismatches, Mismatch{From: f, To: t, Expected: name(e), Observed: name(o)})
			}
		}
	}
	return d, true
}

// parseMatrix reads the suite's PrettyPrint form: a header "-" followed by the
// destination pods, then one row per source pod with one mark per destination.
func parseMatrix(rows []string) (Matrix, bool) {
	if len(rows) < 2 {
		return Matrix{}, false
	}
	head := strings.Fields(rows[0])
	if len(head) < 2 || head[0] != "-" {
		return Matrix{}, false
	}
	m := Matrix{Tos: head[1:], Marks: map[string]map[string]string{}}
	for _, r := range rows[1:] {
		f := strings.Fields(r)
		if len(f) != len(m.Tos)+1 {
			return Matrix{}, false
		}
		m.Froms = append(m.Froms, f[0])
		m.Marks[f[0]] = map[string]string{}
		for i, to := range m.Tos {
			m.Marks[f[0]][to] = f[i+1]
		}
	}
	return m, true
}

// String renders the diff for a person: the summary, the differing pairs grouped by
// direction, and the observed matrix with '!' where it disagrees with the expected.
func (d Diff) String() string {
	var b strings.Builder
	if d.Summary != "" {
		fmt.Fprintf(&b, "%s\n", d.Summary)
	}
	ms := append([]Mismatch(nil), d.Mismatches...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Expected < ms[j].Expected })
	for _, m := range ms {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	fmt.Fprintf(&b, "  observed ('.' allowed, 'X' blocked, '!' differs from expected; a pod to itself is not judged):\n")
	fmt.Fprintf(&b, "    %-*s %s\n", width(d.Observed.Froms), "-", strings.Join(d.Observed.Tos, " "))
	for _, f := range d.Observed.Froms {
		var cells []string
		for _, t := range d.Observed.Tos {
			mark := d.Observed.Marks[f][t]
			if f != t && d.Expected.Marks[f][t] != mark {
				mark = "!" + mark
			}
			cells = append(cells, fmt.Sprintf("%-*s", len(t), mark))
		}
		fmt.Fprintf(&b, "    %-*s %s\n", width(d.Observed.Froms), f, strings.Join(cells, " "))
	}
	return b.String()
}

func width(ss []string) int {
	w := 1
	for _, s := range ss {
		w = max(w, len(s))
	}
	return w
}
