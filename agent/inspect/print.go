package inspect

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints one report for a person.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	name := r.Pod
	if name == "" {
		name = "(no pod)"
	}
	if r.IP != "" {
		name += " (" + r.IP + ")"
	}
	row("pod", name)
	if r.Interface != "" || r.Ifindex != 0 {
		row("interface", fmt.Sprintf("%s (ifindex %d)", r.Interface, r.Ifindex))
	}
	if r.Attach != "" {
		row("attach", r.Attach)
		row("mode", r.Mode)
		row("generation", fmt.Sprint(r.Generation))
	}
	if r.Condition != nil {
		c := r.Condition.Status
		if r.Condition.Reason != "" {
			c += " " + r.Condition.Reason
		}
		if r.Condition.Message != "" {
			c += ": " + r.Condition.Message
		}
		row("condition", c)
		for _, pc := range r.Conditions {
			row("  "+pc.Type, strings.TrimSpace(pc.Status+" "+pc.Reason))
		}
	} else if r.Pod != "" {
		row("condition", "none (the pod is not gated)")
	}
	for _, d := range []struct {
		name string
		d    Direction
	}{{"ingress", r.Ingress}, {"egress", r.Egress}} {
		row(d.name, "kernel "+rulesText(d.d.Kernel)+"; compiler "+rulesText(d.d.Compiled))
	}
	switch {
	case r.Problem != "":
		row("kernel", r.Problem)
	case r.InSync:
		row("kernel", "holds exactly what the compiler computes now")
	default:
		row("kernel", "DRIFT: differs from what the compiler computes now (+ computed, not in the kernel; - in the kernel, no longer computed)")
	}
	tw.Flush()
	for _, d := range []struct {
		name string
		d    Direction
	}{{"ingress", r.Ingress}, {"egress", r.Egress}} {
		for _, a := range d.d.Added {
			fmt.Fprintf(&b, "  %s + %s\n", d.name, a)
		}
		for _, a := range d.d.Removed {
			fmt.Fprintf(&b, "  %s - %s\n", d.name, a)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func rulesText(r Rules) string {
	if r.State == "" {
		return "-"
	}
	if r.State != "isolated" {
		return r.State
	}
	return fmt.Sprintf("isolated, %d prefixes, %d port rules", r.Prefixes, r.PortRules)
}

// WriteTable prints one line per report.
func WriteTable(w io.Writer, rs []*Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tIP\tINTERFACE\tATTACH\tMODE\tGEN\tCONDITION\tINGRESS\tEGRESS\tKERNEL")
	for _, r := range rs {
		pod, ifc := r.Pod, "-"
		if pod == "" {
			pod = "-"
		}
		if r.Ifindex != 0 {
			ifc = fmt.Sprintf("%s/%d", r.Interface, r.Ifindex)
		}
		cond := "-"
		if r.Condition != nil {
			cond = r.Condition.Status
			if r.Condition.Reason != "" {
				cond += "/" + r.Condition.Reason
			}
		}
		kernel := "in sync"
		switch {
		case r.Problem != "":
			kernel = r.Problem
		case !r.InSync:
			n := len(r.Ingress.Added) + len(r.Egress.Added)
			m := len(r.Ingress.Removed) + len(r.Egress.Removed)
			kernel = fmt.Sprintf("DRIFT +%d -%d", n, m)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", pod, dash(r.IP), ifc, dash(r.Attach), dash(r.Mode), r.Generation, cond,
			short(r.Ingress.Kernel), short(r.Egress.Kernel), kernel)
	}
	return tw.Flush()
}

func short(r Rules) string {
	if r.State == "" {
		return "-"
	}
	if r.State != "isolated" {
		return r.State
	}
	return fmt.Sprintf("isolated %d/%d", r.Prefixes, r.PortRules)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
