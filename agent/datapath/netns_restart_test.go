package datapath

import (
	"bufio"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/strictgate/strictgate/agent/rules"
)

// TestPrivilegedNetnsRestart drops every Go object of the datapath while traffic runs,
// then adopts the pins in a new Datapath: an established allowed TCP connection keeps
// working throughout (conntrack survives), a denied flow stays denied throughout, and
// the adopted datapath can be re-programmed and removed.
func TestPrivilegedNetnsRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		forceTC bool
	}{{"tcx", false}, {"cls_bpf", true}} {
		t.Run(tc.name, func(t *testing.T) { testNetnsRestart(t, tc.forceTC) })
	}
}

func testNetnsRestart(t *testing.T, forceTC bool) {
	env := newNSEnv(t, 2)
	a, b := env.pods[0], env.pods[1]
	b.serveTCP(8080)
	b.serveTCP(8081)
	root := tempPinRoot(t)
	d := openPinned(t, root, Options{ForceTC: forceTC})
	env.attachAll(d)
	rulesV1 := func(extra ...rules.PortRule) *rules.PodRules {
		return &rules.PodRules{
			Egress:  rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor(append([]rules.PortRule{tcpRule(8080, 8080, 1)}, extra...), b)},
			Ingress: rules.DirectionRules{State: rules.StateIsolated},
		}
	}
	if _, err := d.Program(a.ifindex, rulesV1()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Program(b.ifindex, &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: entriesFor([]rules.PortRule{tcpRule(8080, 8081, 2)}, a)},
		Egress:  rules.DirectionRules{State: rules.StateIsolated},
	}); err != nil {
		t.Fatal(err)
	}

	conn, err := a.dialTCP(netip.AddrPortFrom(b.v4, 8080), okTimeout)
	if err != nil {
		t.Fatalf("allowed connection: %v", err)
	}
	defer conn.Close()
	var (
		stop             atomic.Bool
		echoes, failures atomic.Int64
		deniedPassed     atomic.Int64
		wg               sync.WaitGroup
	)
	wg.Add(2)
	go func() { // the established connection: a line every 5 ms, echoed
		defer wg.Done()
		r := bufio.NewReader(conn)
		for !stop.Load() {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write([]byte("hello\n")); err != nil {
				failures.Add(1)
				return
			}
			if line, err := r.ReadString('\n'); err != nil || line != "hello\n" {
				failures.Add(1)
				return
			}
			echoes.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() { // the denied flow: a's egress does not allow 8081
		defer wg.Done()
		for !stop.Load() {
			if a.tcpWorks(netip.AddrPortFrom(b.v4, 8081), 100*time.Millisecond) {
				deniedPassed.Add(1)
			}
		}
	}()
	waitEchoes := func(what string) {
		t.Helper()
		start := echoes.Load()
		deadline := time.Now().Add(3 * time.Second)
		for echoes.Load() < start+20 && time.Now().Before(deadline) && failures.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		if echoes.Load() < start+20 {
			t.Fatalf("%s: the established connection stalled (%d echoes, %d failures)", what, echoes.Load(), failures.Load())
		}
	}
	waitEchoes("before restart")
	before := env.attachedProgramIDs(a.ifindex)

	// Drop every Go object: no handle to any map, program or link is left in the process.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = nil
	runtime.GC()
	waitEchoes("without any Go object")

	var d2 *Datapath
	if err := env.inNode(func() (err error) {
		d2, err = Open(Options{PinRoot: root, ForceTC: forceTC, UpgradePrograms: true})
		return err
	}); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	defer env.inNode(d2.Remove) // tc filters are found by ifindex: in the node namespace
	pods, err := d2.Pods()
	if err != nil || len(pods) != 2 {
		t.Fatalf("adopted pods: %+v, %v; want 2", pods, err)
	}
	for _, p := range pods {
		if p.Ingress != rules.StateIsolated || p.Egress != rules.StateIsolated || p.Digest == 0 {
			t.Errorf("adopted pod %+v: want both directions isolated with a digest", p)
		}
	}
	waitEchoes("after adopting with upgraded programs")
	var ours []ebpf.ProgramID
	for _, prog := range []*ebpf.Program{d2.objs.SgPodEgress, d2.objs.SgPodIngress} {
		info, err := prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		ours = append(ours, id)
	}
	// The same object: the pinned programs are reused, not loaded and verified again.
	if !slices.Equal(ours, before) && !slices.Equal(ours, []ebpf.ProgramID{before[1], before[0]}) {
		t.Errorf("adopting loaded new programs %v instead of reusing the pinned %v", ours, before)
	}
	for _, p := range env.pods {
		ids := env.attachedProgramIDs(p.ifindex)
		if len(ids) != 2 || !slices.Contains(ours, ids[0]) || !slices.Contains(ours, ids[1]) || ids[0] == ids[1] {
			t.Errorf("%s runs programs %v after UpgradePrograms, want this process's %v", p.name, ids, ours)
		}
	}
	// The adopted datapath rebuilds its index from the kernel and re-programs: the
	// connection is re-checked under the new generation and survives.
	if _, err := d2.Program(a.ifindex, rulesV1(tcpRule(9000, 9000, 3))); err != nil {
		t.Fatalf("program after adopting: %v", err)
	}
	waitEchoes("after re-programming")
	if p, _ := d2.Pod(a.ifindex); p.Digest != RulesDigest(rulesV1(tcpRule(9000, 9000, 3))) {
		t.Errorf("digest %x does not match the programmed rules", p.Digest)
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("the established connection failed %d times", failures.Load())
	}
	if n := deniedPassed.Load(); n != 0 {
		t.Errorf("the denied flow connected %d times", n)
	}
	st, _ := d2.Stats()
	t.Logf("%d echoes; conntrack entries created %d; stats %+v", echoes.Load(), st.ConntrackCreated, st)
	// Remove: nothing left.
	if err := env.inNode(d2.Remove); err != nil {
		t.Fatal(err)
	}
	for _, p := range env.pods {
		if tcx, filters, clsact := env.attachedPrograms(p.ifindex); tcx+filters != 0 || clsact {
			t.Errorf("%s after Remove: %d tcx, %d filters, clsact %v", p.name, tcx, filters, clsact)
		}
	}
	if left := pinsLeft(root); len(left) != 0 {
		t.Errorf("pins left after Remove: %v", left)
	}
}
