package datapath

import (
	"sync"
	"testing"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// TestPrivilegedTwoProcesses plays the CNI plugin and the agent on one pin root: the
// "CNI" registers and later detaches a pod, the "agent" programs it; the agent's Sweep
// then removes the rules the detach left behind, and a new pod in the same slot starts
// closed rather than with the old rules.
func TestPrivilegedTwoProcesses(t *testing.T) {
	requireRoot(t)
	root := tempPinRoot(t)
	agent := openPinned(t, root, Options{})
	defer agent.Remove()
	cni := openPinned(t, root, Options{})
	defer cni.Close()

	const pod = 800
	if _, err := cni.Register(pod, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	allow := isolatedEgress([]rules.Entry{{Prefix: mustPrefix("10.0.0.0/8"), Ports: []rules.PortRule{tcpRule(80, 80, 1)}}})
	if _, err := agent.Program(pod, allow); err != nil {
		t.Fatal(err)
	}
	flow := func() []byte { return egress(packet.ProtoTCP, "10.1.1.1", 80) }
	if r, err := cni.RunPacket(pod, rules.Egress, flow()); err != nil || r.Verdict != VerdictAllow || r.Rule != 1 {
		t.Fatalf("programmed by the agent, seen by the CNI process: %+v %v", r, err)
	}
	slot := func() uint32 { p, _ := agent.Pod(pod); return p.Slot }()
	if err := cni.Detach(pod); err != nil {
		t.Fatal(err)
	}
	if agent.idx.total != 1 {
		t.Fatalf("agent index holds %d prefixes before Sweep, want the 1 left behind", agent.idx.total)
	}
	if err := agent.Sweep(); err != nil {
		t.Fatal(err)
	}
	n := 0
	var k bpfSgLpmKey
	var v bpfSgLpmVal
	for it := agent.objs.SgRules.Iterate(); it.Next(&k, &v); {
		n++
	}
	if n != 0 || agent.idx.total != 0 {
		t.Errorf("after Sweep: %d prefixes in the trie, %d in the index; want 0", n, agent.idx.total)
	}
	// Reuse: fill every slot; whichever pod gets the old slot starts closed and counts from 0.
	reused := -1
	for i := 0; i < contract.MaxPods; i++ {
		p, err := cni.Register(10000+i, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny)
		if err != nil {
			t.Fatal(err)
		}
		if p.Slot == slot {
			reused = 10000 + i
		}
		defer cni.Detach(10000 + i)
	}
	if _, err := cni.Register(pod+2, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err == nil {
		t.Error("registering beyond MaxPods succeeded")
	}
	if r, err := cni.RunPacket(reused, rules.Egress, flow()); err != nil || r.Verdict != VerdictDeny || r.Rule != rules.RuleUnprogrammed {
		t.Errorf("new pod in a reused slot: %+v %v; want closed (unprogrammed)", r, err)
	}
	pc, _ := cni.PodCounters(reused)
	if pc.Get(rules.Egress, VerdictDeny).Packets != 1 || pc.Get(rules.Egress, VerdictAllow).Packets != 0 {
		t.Errorf("counters of a reused slot: %+v, want only the one packet since registration", pc)
	}
}

// TestPrivilegedConcurrentFirstOpen: several processes (here goroutines) opening a fresh
// pin root at once all end up on the same maps, initialised once.
func TestPrivilegedConcurrentFirstOpen(t *testing.T) {
	requireRoot(t)
	root := tempPinRoot(t)
	const n = 4
	ds := make([]*Datapath, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds[i], errs[i] = Open(Options{PinRoot: root})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer ds[i].Close()
	}
	if _, err := ds[0].Register(5, rules.StateUnisolated, rules.StateUnisolated); err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		if p, err := d.Pod(5); err != nil || p.Egress != rules.StateUnisolated {
			t.Errorf("open %d does not see the pod registered through open 0: %+v %v", i, p, err)
		}
		if c, err := d.Config(); err != nil || !c.AllowHost || c.EventMode != DefaultEventMode {
			t.Errorf("open %d: config %+v %v; want the defaults", i, c, err)
		}
	}
	if err := ds[0].Remove(); err != nil {
		t.Fatal(err)
	}
}
