package datapath

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/strictgate/strictgate/agent/rules"
)

// TestPrivilegedNetnsStalePods reproduces a helm uninstall + reinstall: pods are
// attached and programmed, every strictgate process goes away, one pod's interface is
// deleted (its tcx links are severed, its cls_bpf filters vanish), and possibly a new
// interface takes the same index. Open — with and without UpgradePrograms — must
// succeed, drop the stale pod (entry, slot, link pins, conntrack; rules for Sweep) and
// keep enforcing the other pods.
func TestPrivilegedNetnsStalePods(t *testing.T) {
	for _, tc := range []struct {
		forceTC, reuse, upgrade bool
	}{
		{false, false, false}, {false, false, true},
		{false, true, false}, {false, true, true},
		{true, false, false}, {true, false, true},
	} {
		name := fmt.Sprintf("tcx/gone/upgrade=%v", tc.upgrade)
		if tc.forceTC {
			name = fmt.Sprintf("cls_bpf/gone/upgrade=%v", tc.upgrade)
		} else if tc.reuse {
			name = fmt.Sprintf("tcx/index-reused/upgrade=%v", tc.upgrade)
		}
		t.Run(name, func(t *testing.T) { testNetnsStalePods(t, tc.forceTC, tc.reuse, tc.upgrade) })
	}
}

func testNetnsStalePods(t *testing.T, forceTC, reuse, upgrade bool) {
	env := newNSEnv(t, 3)
	a, b, c := env.pods[0], env.pods[1], env.pods[2]
	b.serveTCP(8080)
	b.serveTCP(8081)
	root := tempPinRoot(t)
	d := openPinned(t, root, Options{ForceTC: forceTC})
	env.attachAll(d)
	program := func(d *Datapath, p *nsPod, r *rules.PodRules) {
		t.Helper()
		if _, err := d.Program(p.ifindex, r); err != nil {
			t.Fatalf("program %s: %v", p.name, err)
		}
	}
	program(d, a, &rules.PodRules{
		Egress:  rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor([]rules.PortRule{tcpRule(8080, 8080, 1)}, b)},
		Ingress: rules.DirectionRules{State: rules.StateIsolated},
	})
	program(d, b, &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor([]rules.PortRule{tcpRule(8080, 8081, 2)}, a, c)},
		Egress:  rules.DirectionRules{State: rules.StateIsolated},
	})
	program(d, c, &rules.PodRules{
		Egress:  rules.DirectionRules{State: rules.StateUnisolated},
		Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor([]rules.PortRule{tcpRule(9, 9, 3)}, a)},
	})
	// c makes a connection: conntrack entries keyed by c's interface.
	if !c.tcpWorks(netip.AddrPortFrom(b.v4, 8080), okTimeout) {
		t.Fatal("c -> b:8080 should pass before the restart")
	}
	cPod, err := d.Pod(c.ifindex)
	if err != nil {
		t.Fatal(err)
	}
	if n := countConntrack(t, d, c.ifindex); n == 0 {
		t.Fatal("no conntrack entry of c before the restart")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// No strictgate process: the pod is deleted (its veth with it).
	err = env.inNode(func() error {
		l, err := netlink.LinkByIndex(c.ifindex)
		if err != nil {
			return err
		}
		if err := netlink.LinkDel(l); err != nil {
			return err
		}
		if reuse { // a pod created meanwhile (CNI not chained) gets the same index
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sgr" + env.id, Index: c.ifindex}, PeerName: "sgrp" + env.id})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("delete c's interface: %v", err)
	}

	var logs bytes.Buffer
	var d2 *Datapath
	if err := env.inNode(func() (err error) {
		d2, err = Open(Options{PinRoot: root, ForceTC: forceTC, UpgradePrograms: upgrade,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		return err
	}); err != nil {
		t.Fatalf("Open after the pod's interface vanished: %v", err)
	}
	defer env.inNode(d2.Remove)
	t.Logf("Open logged:\n%s", logs.String())

	// The stale pod is collected ...
	got := d2.Collected()
	if len(got) != 1 || got[0].Ifindex != c.ifindex || got[0].Slot != cPod.Slot || got[0].Reason == "" {
		t.Errorf("Collected() = %+v, want just c (ifindex %d, slot %d) with a reason", got, c.ifindex, cPod.Slot)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("ifindex=%d", c.ifindex)) {
		t.Errorf("the collected pod was not logged")
	}
	if _, err := d2.Pod(c.ifindex); err == nil {
		t.Errorf("c's entry survived Open")
	}
	var owner uint32
	if err := d2.objs.SgSlots.Lookup(cPod.Slot, &owner); err == nil && owner == uint32(c.ifindex) {
		t.Errorf("c's slot %d is still taken", cPod.Slot)
	}
	for _, pin := range pinsLeft(root) {
		if strings.HasPrefix(filepath.Base(pin), fmt.Sprintf("if%d_", c.ifindex)) {
			t.Errorf("c's link pin %s survived Open", pin)
		}
	}
	if n := countConntrack(t, d2, c.ifindex); n != 0 {
		t.Errorf("%d conntrack entries of c survived Open", n)
	}
	// ... its rules go with the agent's Sweep ...
	if n := countRulesOfSlot(t, d2, cPod.Slot); n == 0 {
		t.Errorf("no rules of c's slot before Sweep: the test does not exercise Sweep")
	}
	if err := d2.Sweep(); err != nil {
		t.Fatal(err)
	}
	if n := countRulesOfSlot(t, d2, cPod.Slot); n != 0 {
		t.Errorf("%d rules of c's slot left after Sweep", n)
	}

	// ... and the other pods are still enforced, by this build's programs if upgraded.
	pods, _ := d2.Pods()
	if len(pods) != 2 {
		t.Errorf("pods after Open: %+v, want a and b", pods)
	}
	runFlowChecks(t, []flowCheck{
		{"allowed", a, netip.AddrPortFrom(b.v4, 8080), false, true},
		{"egress denies 8081", a, netip.AddrPortFrom(b.v4, 8081), false, false},
	})
	if upgrade {
		ours := programIDs(t, d2)
		for _, p := range []*nsPod{a, b} {
			ids := env.attachedProgramIDs(p.ifindex)
			if len(ids) != 2 || !slices.Contains(ours, ids[0]) || !slices.Contains(ours, ids[1]) {
				t.Errorf("%s runs programs %v after UpgradePrograms, want %v", p.name, ids, ours)
			}
		}
	}
	program(d2, a, &rules.PodRules{
		Egress:  rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor([]rules.PortRule{tcpRule(8080, 8081, 1)}, b)},
		Ingress: rules.DirectionRules{State: rules.StateIsolated},
	})
	runFlowChecks(t, []flowCheck{{"allowed after re-programming", a, netip.AddrPortFrom(b.v4, 8081), false, true}})

	if reuse {
		// The new interface: attached while no Open ran since its predecessor vanished,
		// Attach must not inherit the predecessor's entry (states, rules, conntrack).
		err := env.inNode(func() error {
			if _, err := d2.Attach(c.ifindex, rules.StateUnisolated, rules.StateUnisolated); err != nil {
				return err
			}
			l, err := netlink.LinkByIndex(c.ifindex)
			if err != nil {
				return err
			}
			if err := netlink.LinkDel(l); err != nil {
				return err
			}
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sgr" + env.id, Index: c.ifindex}, PeerName: "sgrp" + env.id})
		})
		if err != nil {
			t.Fatal(err)
		}
		var p Pod
		if err := env.inNode(func() (err error) {
			p, err = d2.Attach(c.ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny)
			return err
		}); err != nil {
			t.Fatalf("attach to the reused index: %v", err)
		}
		if p.Ingress != rules.StateUnprogrammedDeny || p.Egress != rules.StateUnprogrammedDeny {
			t.Errorf("attach to a reused index kept the vanished interface's states: %+v", p)
		}
		if tcx, _, _ := env.attachedPrograms(c.ifindex); tcx != 2 {
			t.Errorf("%d tcx programs on the reused index, want 2", tcx)
		}
	}
}

func countConntrack(t *testing.T, d *Datapath, ifindex int) int {
	t.Helper()
	var (
		k bpfSgCtKey
		v bpfSgCtVal
		n int
	)
	it := d.objs.SgCt.Iterate()
	for it.Next(&k, &v) {
		if k.Ifindex == uint32(ifindex) {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func countRulesOfSlot(t *testing.T, d *Datapath, slot uint32) int {
	t.Helper()
	var (
		k bpfSgLpmKey
		v bpfSgLpmVal
		n int
	)
	it := d.objs.SgRules.Iterate()
	for it.Next(&k, &v) {
		if k.Ruleset>>2 == slot {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func programIDs(t *testing.T, d *Datapath) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	for _, prog := range []*ebpf.Program{d.objs.SgPodEgress, d.objs.SgPodIngress} {
		info, err := prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		ids = append(ids, id)
	}
	return ids
}
