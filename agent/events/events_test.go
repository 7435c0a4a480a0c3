package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/events"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

type resolver struct {
	ips   map[netip.Addr]types.NamespacedName
	ifs   map[int]types.NamespacedName
	rules map[rules.RuleID]compile.RuleRef
}

func (r resolver) PodByIP(a netip.Addr) (types.NamespacedName, bool) { k, ok := r.ips[a]; return k, ok }
func (r resolver) PodByIfindex(i int) (types.NamespacedName, bool)   { k, ok := r.ifs[i]; return k, ok }
func (r resolver) Rule(id rules.RuleID) (compile.RuleRef, bool)      { k, ok := r.rules[id]; return k, ok }

var (
	web    = types.NamespacedName{Namespace: "shop", Name: "web"}
	client = types.NamespacedName{Namespace: "shop", Name: "client"}
	res    = resolver{
		ips: map[netip.Addr]types.NamespacedName{netip.MustParseAddr("10.201.0.2"): web, netip.MustParseAddr("10.201.0.3"): client},
		ifs: map[int]types.NamespacedName{12: web, 13: client},
		rules: map[rules.RuleID]compile.RuleRef{
			77: {Policy: types.NamespacedName{Namespace: "shop", Name: "allow-web"}, Direction: rules.Ingress, Index: 1},
			79: {Policy: types.NamespacedName{Name: "platform"}, Direction: rules.Ingress, Index: 1, Tier: "Admin", Name: "monitoring", Action: "Accept"},
		},
	}
	when = time.Date(2026, 11, 22, 21, 0, 0, 0, time.UTC)
)

func ev(v datapath.Verdict, dir rules.Direction, rule rules.RuleID, ifindex int, src, dst string) datapath.Event {
	return datapath.Event{
		Time: when, Ifindex: ifindex, Direction: dir, Verdict: v, Reason: datapath.ReasonPolicy, Rule: rule,
		Protocol: rules.ProtocolTCP, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), Bytes: 60,
	}
}

func TestRecord(t *testing.T) {
	l := events.NewLogger(nil, "node-a", contract.EventLogAll, res)
	idx := 1
	for _, tc := range []struct {
		name string
		e    datapath.Event
		want events.Record
	}{
		{
			name: "deny by default deny, both pods known",
			e:    ev(datapath.VerdictDeny, rules.Ingress, rules.RuleNone, 12, "10.201.0.3:40000", "10.201.0.2:8080"),
			want: events.Record{Verdict: "DENY", Direction: "ingress", SrcIP: "10.201.0.3", SrcPort: 40000, DstIP: "10.201.0.2", DstPort: 8080,
				SrcNamespace: "shop", SrcPod: "client", DstNamespace: "shop", DstPod: "web", Policy: events.PolicyDefaultDeny},
		},
		{
			name: "accept by a policy rule",
			e:    ev(datapath.VerdictAllow, rules.Ingress, 77, 12, "10.201.0.3:40000", "10.201.0.2:8080"),
			want: events.Record{Verdict: "ACCEPT", Direction: "ingress", SrcIP: "10.201.0.3", SrcPort: 40000, DstIP: "10.201.0.2", DstPort: 8080,
				SrcNamespace: "shop", SrcPod: "client", DstNamespace: "shop", DstPod: "web", Policy: "shop/allow-web", RuleIndex: &idx, Tier: "NetworkPolicy"},
		},
		{
			name: "accept by an Admin-tier ClusterNetworkPolicy rule",
			e:    ev(datapath.VerdictAllow, rules.Ingress, 79, 12, "10.201.0.3:40000", "10.201.0.2:8080"),
			want: events.Record{Verdict: "ACCEPT", Direction: "ingress", SrcIP: "10.201.0.3", SrcPort: 40000, DstIP: "10.201.0.2", DstPort: 8080,
				SrcNamespace: "shop", SrcPod: "client", DstNamespace: "shop", DstPod: "web", Policy: "platform", RuleIndex: &idx, Tier: "Admin"},
		},
		{
			name: "egress to an outside address; local pod named by its interface",
			e:    ev(datapath.VerdictAudit, rules.Egress, rules.RuleNone, 13, "10.99.0.1:5555", "192.0.2.1:443"),
			want: events.Record{Verdict: "AUDIT", Direction: "egress", SrcIP: "10.99.0.1", SrcPort: 5555, DstIP: "192.0.2.1", DstPort: 443,
				SrcNamespace: "shop", SrcPod: "client", Policy: events.PolicyDefaultDeny},
		},
		{
			name: "unprogrammed pod",
			e:    ev(datapath.VerdictDeny, rules.Egress, rules.RuleUnprogrammed, 99, "10.201.0.9:1", "10.201.0.2:80"),
			want: events.Record{Verdict: "DENY", Direction: "egress", SrcIP: "10.201.0.9", SrcPort: 1, DstIP: "10.201.0.2", DstPort: 80,
				DstNamespace: "shop", DstPod: "web", Policy: events.PolicyUnprogrammed},
		},
		{
			name: "rule of a policy that changed meanwhile",
			e:    ev(datapath.VerdictAllow, rules.Ingress, 78, 12, "10.201.0.3:1", "10.201.0.2:80"),
			want: events.Record{Verdict: "ACCEPT", Direction: "ingress", SrcIP: "10.201.0.3", SrcPort: 1, DstIP: "10.201.0.2", DstPort: 80,
				SrcNamespace: "shop", SrcPod: "client", DstNamespace: "shop", DstPod: "web", Policy: events.PolicyUnknownRule},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := l.Record(tc.e)
			tc.want.Time, tc.want.Node, tc.want.Protocol, tc.want.Reason, tc.want.Bytes = when, "node-a", "TCP", "policy", 60
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if !bytes.Equal(gj, wj) {
				t.Fatalf("record\n got %s\nwant %s", gj, wj)
			}
		})
	}
}

// TestRecordSpoofed: a drop by source-address validation names no policy (none was
// consulted), though its rule is RuleNone like a default-deny drop.
func TestRecordSpoofed(t *testing.T) {
	l := events.NewLogger(nil, "node-a", contract.EventLogAll, res)
	e := ev(datapath.VerdictDeny, rules.Egress, rules.RuleNone, 13, "192.0.2.7:4300", "10.201.0.2:8080")
	e.Reason = datapath.ReasonSpoofed
	got := l.Record(e)
	if got.Policy != events.PolicySourceValidation || got.Reason != "spoofed" || got.SrcPod != "client" || got.DstPod != "web" {
		t.Fatalf("record %+v: want policy %q, reason spoofed, the sending pod named by its interface", got, events.PolicySourceValidation)
	}
}

// fakeSource replays events, then reports the reader closed.
type fakeSource struct {
	evs    []datapath.Event
	closed bool
}

func (f *fakeSource) Read() (datapath.Event, error) {
	if len(f.evs) == 0 {
		return datapath.Event{}, datapath.ErrClosed
	}
	e := f.evs[0]
	f.evs = f.evs[1:]
	return e, nil
}
func (f *fakeSource) Close() error { f.closed = true; return nil }

func TestRunModesAndSeedQuery(t *testing.T) {
	all := []datapath.Event{
		ev(datapath.VerdictAllow, rules.Ingress, 77, 12, "10.201.0.3:40000", "10.201.0.2:8080"),
		ev(datapath.VerdictDeny, rules.Ingress, rules.RuleNone, 12, "10.201.0.3:40001", "10.201.0.2:9090"),
		ev(datapath.VerdictAudit, rules.Egress, rules.RuleNone, 13, "10.201.0.3:40002", "192.0.2.1:443"),
	}
	// The seed's CloudWatch Logs Insights query: filter @message like /DENY/.
	seed := regexp.MustCompile(`DENY`)
	for _, tc := range []struct {
		mode     contract.EventLogMode
		verdicts []string
	}{
		{contract.EventLogNone, nil},
		{contract.EventLogDeny, []string{"DENY", "AUDIT"}},
		{contract.EventLogAll, []string{"ACCEPT", "DENY", "AUDIT"}},
	} {
		var buf bytes.Buffer
		src := &fakeSource{evs: append([]datapath.Event(nil), all...)}
		if err := events.Run(context.Background(), src, events.NewLogger(&buf, "node-a", tc.mode, res)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var r events.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("not a JSON line: %q", line)
			}
			got = append(got, r.Verdict)
			if seed.MatchString(line) != (r.Verdict == "DENY") {
				t.Fatalf("the seed query /DENY/ %v on a %s line: %s", seed.MatchString(line), r.Verdict, line)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.verdicts, ",") {
			t.Errorf("mode %s logged %v, want %v", tc.mode, got, tc.verdicts)
		}
	}
	for s, want := range map[string]datapath.EventMode{"none": datapath.EventsNone, "deny": datapath.EventsDenyOnly, "all": datapath.EventsAll} {
		m, err := contract.ParseEventLogMode(s)
		if err != nil || events.DatapathMode(m) != want {
			t.Errorf("ParseEventLogMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := contract.ParseEventLogMode("deny-only"); err == nil {
		t.Error("ParseEventLogMode accepted an unknown mode")
	}
}

type counterSource struct {
	pcs []datapath.PodCounters
	err error
}

func (c *counterSource) Counters() ([]datapath.PodCounters, error) { return c.pcs, c.err }

func pc(ifindex int, slot uint32, inDeny, egDeny, inAllow uint64) datapath.PodCounters {
	var p datapath.PodCounters
	p.Ifindex, p.Slot = ifindex, slot
	p.ByDir[rules.Ingress][datapath.VerdictDeny] = datapath.Counter{Packets: inDeny, Bytes: inDeny * 100}
	p.ByDir[rules.Egress][datapath.VerdictDeny] = datapath.Counter{Packets: egDeny, Bytes: egDeny * 100}
	p.ByDir[rules.Ingress][datapath.VerdictAllow] = datapath.Counter{Packets: inAllow, Bytes: inAllow * 100}
	return p
}

func TestCollectorIsMonotonic(t *testing.T) {
	src := &counterSource{}
	nsOf := map[int]string{12: "shop", 13: "shop", 14: "bank"}
	c := events.NewCollector(src, func(i int) (string, bool) { ns, ok := nsOf[i]; return ns, ok })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	drops := func(dir, ns string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "network_policy_drop_count_total" {
				continue
			}
			for _, m := range mf.Metric {
				var d, n string
				for _, lp := range m.Label {
					switch lp.GetName() {
					case "direction":
						d = lp.GetValue()
					case "namespace":
						n = lp.GetValue()
					}
				}
				if d == dir && n == ns {
					return m.Counter.GetValue()
				}
			}
		}
		return 0
	}
	steps := []struct {
		name    string
		pcs     []datapath.PodCounters
		shopIn  float64
		shopEg  float64
		bankIn  float64
		unknown float64
	}{
		{"two pods", []datapath.PodCounters{pc(12, 0, 5, 1, 9), pc(13, 1, 2, 0, 0)}, 7, 1, 0, 0},
		{"more drops", []datapath.PodCounters{pc(12, 0, 6, 3, 9), pc(13, 1, 2, 0, 0)}, 8, 3, 0, 0},
		{"pod 13 deleted: its drops stay counted", []datapath.PodCounters{pc(12, 0, 6, 3, 9)}, 8, 3, 0, 0},
		{"slot 1 reused by a bank pod", []datapath.PodCounters{pc(12, 0, 6, 3, 9), pc(14, 1, 1, 0, 0)}, 8, 3, 1, 0},
		{"unnamed interface", []datapath.PodCounters{pc(12, 0, 6, 3, 9), pc(14, 1, 1, 0, 0), pc(20, 2, 4, 0, 0)}, 8, 3, 1, 4},
		{"counters of a pod reset (re-registered)", []datapath.PodCounters{pc(12, 0, 1, 0, 0), pc(14, 1, 1, 0, 0), pc(20, 2, 4, 0, 0)}, 9, 3, 1, 4},
	}
	for _, s := range steps {
		src.pcs = s.pcs
		if got := []float64{drops("ingress", "shop"), drops("egress", "shop"), drops("ingress", "bank"), drops("ingress", events.UnknownNamespace)}; got[0] != s.shopIn || got[1] != s.shopEg || got[2] != s.bankIn || got[3] != s.unknown {
			t.Fatalf("%s: drops shop in/eg, bank in, unknown in = %v, want %v", s.name, got, []float64{s.shopIn, s.shopEg, s.bankIn, s.unknown})
		}
	}
	// Byte counters and verdict totals come along.
	if n := testutil.CollectAndCount(c, "network_policy_drop_bytes_total"); n == 0 {
		t.Fatal("no drop bytes series")
	}
	src.err = errors.New("map gone")
	if _, err := c.Totals(); err == nil {
		t.Fatal("a failed read was not reported")
	}
}

// tierResolver adds events.TierResolver: a drop of the egress to 169.254.169.254 is an
// Admin Deny, every other drop the default deny.
type tierResolver struct{ resolver }

func (tierResolver) DenyRule(ifindex int, d rules.Direction, remote netip.Addr, proto rules.Protocol, port uint16) (compile.RuleRef, bool) {
	if d == rules.Egress && remote == netip.MustParseAddr("169.254.169.254") && proto == rules.ProtocolTCP && port == 80 {
		return compile.RuleRef{Policy: types.NamespacedName{Name: "platform"}, Direction: d, Index: 2, Tier: "Admin", Action: "Deny"}, true
	}
	return compile.RuleRef{}, false
}

func TestRecordTierDeny(t *testing.T) {
	l := events.NewLogger(nil, "node-a", contract.EventLogAll, tierResolver{res})
	for _, tc := range []struct {
		dst, policy, tier string
	}{
		{"169.254.169.254:80", "platform", "Admin"},
		{"169.254.169.254:81", events.PolicyDefaultDeny, ""},
	} {
		got := l.Record(ev(datapath.VerdictDeny, rules.Egress, rules.RuleNone, 13, "10.201.0.3:40000", tc.dst))
		if got.Policy != tc.policy || got.Tier != tc.tier {
			t.Errorf("drop to %s: policy %q tier %q, want %q %q", tc.dst, got.Policy, got.Tier, tc.policy, tc.tier)
		}
	}
}
