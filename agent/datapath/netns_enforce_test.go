package datapath

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/strictgate/strictgate/agent/rules"
)

const (
	okTimeout   = 3 * time.Second
	denyTimeout = 400 * time.Millisecond
)

type flowCheck struct {
	name     string
	from     *nsPod
	to       netip.AddrPort
	udp      bool
	wantPass bool
}

func runFlowChecks(t *testing.T, checks []flowCheck) {
	t.Helper()
	for _, c := range checks {
		timeout := okTimeout
		if !c.wantPass {
			timeout = denyTimeout
		}
		var got bool
		if c.udp {
			got = c.from.udpRoundTrip(c.to, timeout)
		} else {
			got = c.from.tcpWorks(c.to, timeout)
		}
		if got != c.wantPass {
			proto := "tcp"
			if c.udp {
				proto = "udp"
			}
			t.Errorf("%s: %s %s -> %s passed=%v, want %v", c.name, proto, c.from.name, c.to, got, c.wantPass)
		}
	}
}

// TestPrivilegedNetnsEnforcement runs real sockets between pod namespaces through the
// attached programs (tcx), then detaches and checks that nothing is left.
func TestPrivilegedNetnsEnforcement(t *testing.T) {
	for _, tc := range []struct {
		name    string
		forceTC bool
	}{{"tcx", false}, {"cls_bpf fallback", true}} {
		t.Run(tc.name, func(t *testing.T) {
			testNetnsEnforcement(t, tc.forceTC)
		})
	}
}

func testNetnsEnforcement(t *testing.T, forceTC bool) {
	env := newNSEnv(t, 3)
	a, b, c := env.pods[0], env.pods[1], env.pods[2]
	for _, p := range env.pods {
		p.serveTCP(8080)
		p.serveTCP(8081)
		p.serveUDP(9090, 9091)
	}
	// Without the datapath everything flows (the harness works).
	runFlowChecks(t, []flowCheck{
		{"no datapath", a, netip.AddrPortFrom(b.v4, 8080), false, true},
		{"no datapath v6", a, netip.AddrPortFrom(b.v6, 8080), false, true},
		{"no datapath udp", a, netip.AddrPortFrom(b.v4, 9090), true, true},
	})

	root := tempPinRoot(t)
	d := openPinned(t, root, Options{ForceTC: forceTC})
	env.attachAll(d)
	wantMode := AttachTCX
	if forceTC {
		wantMode = AttachTC
	}
	for _, p := range env.pods {
		pod, err := d.Pod(p.ifindex)
		if err != nil || pod.Attach != wantMode {
			t.Fatalf("%s: %+v, %v; want attached with %s", p.name, pod, err, wantMode)
		}
		tcx, filters, _ := env.attachedPrograms(p.ifindex)
		if forceTC && (tcx != 0 || filters != 2) || !forceTC && (tcx != 2 || filters != 0) {
			t.Fatalf("%s: %d tcx programs, %d tc filters attached", p.name, tcx, filters)
		}
	}
	runFlowChecks(t, []flowCheck{
		{"strict: unprogrammed pods are closed", a, netip.AddrPortFrom(b.v4, 8080), false, false},
		{"strict v6", a, netip.AddrPortFrom(b.v6, 9090), true, false},
	})

	web := []rules.PortRule{tcpRule(8080, 8080, 1), {Protocol: rules.ProtocolUDP, First: 9090, Last: 9090, Rule: 2}}
	webAndMore := append(web, tcpRule(8081, 8081, 3))
	program := func(p *nsPod, r *rules.PodRules) {
		t.Helper()
		if _, err := d.Program(p.ifindex, r); err != nil {
			t.Fatalf("program %s: %v", p.name, err)
		}
	}
	program(a, &rules.PodRules{
		Egress:  rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor(web, b)},
		Ingress: rules.DirectionRules{State: rules.StateIsolated},
	})
	program(b, &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor(webAndMore, a)},
		Egress:  rules.DirectionRules{State: rules.StateIsolated},
	})
	program(c, &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateUnisolated},
		Egress:  rules.DirectionRules{State: rules.StateIsolated},
	})
	var checks []flowCheck
	for _, fam := range []struct {
		name string
		of   func(*nsPod) netip.Addr
	}{{"v4", func(p *nsPod) netip.Addr { return p.v4 }}, {"v6", func(p *nsPod) netip.Addr { return p.v6 }}} {
		to := func(p *nsPod, port uint16) netip.AddrPort { return netip.AddrPortFrom(fam.of(p), port) }
		checks = append(checks,
			flowCheck{"allowed tcp, reply returns " + fam.name, a, to(b, 8080), false, true},
			flowCheck{"allowed udp, reply returns " + fam.name, a, to(b, 9090), true, true},
			flowCheck{"egress denies the port " + fam.name, a, to(b, 8081), false, false},
			flowCheck{"egress denies udp port " + fam.name, a, to(b, 9091), true, false},
			flowCheck{"isolated egress with no rules " + fam.name, c, to(b, 8080), false, false},
			flowCheck{"reverse direction is not allowed " + fam.name, b, to(a, 8080), false, false},
			flowCheck{"egress to an unisolated pod not in the rules " + fam.name, a, to(c, 8080), false, false},
		)
	}
	runFlowChecks(t, checks)

	// Counters and events saw it.
	pc, err := d.PodCounters(a.ifindex)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Get(rules.Egress, VerdictDeny).Packets == 0 || pc.Get(rules.Egress, VerdictAllow).Packets == 0 || pc.Get(rules.Ingress, VerdictAllow).Packets == 0 {
		t.Errorf("pod A counters %+v: want egress allows and denies and ingress (replies) allowed", pc)
	}
	rd, err := d.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	drain(rd)
	a.tcpWorks(netip.AddrPortFrom(b.v4, 8081), denyTimeout)
	rd.SetDeadline(time.Now().Add(2 * time.Second))
	e, err := rd.Read()
	if err != nil || e.Ifindex != a.ifindex || e.Verdict != VerdictDeny || e.Dst != netip.AddrPortFrom(b.v4, 8081) || e.Direction != rules.Egress {
		t.Errorf("deny event %+v, %v; want pod A egress to %s:8081 denied", e, err, b.v4)
	}

	// Detach leaves nothing behind, and traffic flows again.
	for _, p := range env.pods {
		if err := env.inNode(func() error { return d.Detach(p.ifindex) }); err != nil {
			t.Fatalf("detach %s: %v", p.name, err)
		}
		tcx, filters, clsact := env.attachedPrograms(p.ifindex)
		if tcx != 0 || filters != 0 || clsact {
			t.Errorf("%s after Detach: %d tcx programs, %d filters, clsact=%v", p.name, tcx, filters, clsact)
		}
		if _, err := d.Pod(p.ifindex); err == nil {
			t.Errorf("%s: pod entry survives Detach", p.name)
		}
	}
	if left := pinsLeft(root + "/links"); len(left) != 0 {
		t.Errorf("link pins left after Detach: %v", left)
	}
	if d.idx.total != 0 {
		t.Errorf("%d prefixes left in the trie after detaching every pod", d.idx.total)
	}
	runFlowChecks(t, []flowCheck{{"after detach", c, netip.AddrPortFrom(b.v4, 8080), false, true}})
	if err := env.inNode(d.Remove); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("pin root %s survives Remove: %v", root, pinsLeft(root))
	}
}
