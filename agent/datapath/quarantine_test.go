package datapath

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// fullPortRules is an isolated ingress whose entries, one per /32 of 10.<seed>.x.y,
// each carry their own list of contract.MaxPortRulesPerEntry port rules, lists entries
// many. Lists of different seeds never share a port-table range.
func fullPortRules(seed, lists int) *rules.PodRules {
	pr := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated}}
	for i := range lists {
		ports := make([]rules.PortRule, contract.MaxPortRulesPerEntry)
		for j := range ports {
			p := uint16(j*100 + 1)
			ports[j] = tcpRule(p, p, rules.RuleID(seed*10000+i+1))
		}
		addr := netip.AddrFrom4([4]byte{10, byte(seed), byte(i >> 8), byte(i)})
		pr.Ingress.Entries = append(pr.Ingress.Entries, rules.Entry{Prefix: netip.PrefixFrom(addr, 32), Ports: ports})
	}
	return pr
}

// TestProgramWaitsForQuarantineWithoutTheLock: a pod whose port rules fit only once
// recently freed ranges leave quarantine is programmed after the grace period, and
// while it waits the datapath lock is free: other pods are programmed meanwhile.
func TestProgramWaitsForQuarantineWithoutTheLock(t *testing.T) {
	d := openEphemeral(t)
	const a, b, c = 31, 32, 33
	for _, ifindex := range []int{a, b, c} {
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	lists := contract.MaxPortRules / contract.MaxPortRulesPerEntry
	if _, err := d.Program(a, fullPortRules(1, lists)); err != nil {
		t.Fatalf("fill the port table: %v", err)
	}
	// a's lists go into quarantine; b needs the whole table.
	isolated := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated}}
	if _, err := d.Program(a, isolated); err != nil {
		t.Fatal(err)
	}

	entered, release := make(chan struct{}), make(chan struct{})
	waits := 0
	quarantineSleep = func(dur time.Duration) {
		waits++
		if waits == 1 {
			close(entered)
			<-release
		}
		time.Sleep(dur)
	}
	t.Cleanup(func() { quarantineSleep = time.Sleep })

	done := make(chan error, 1)
	go func() {
		_, err := d.Program(b, fullPortRules(2, lists))
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("Program(b) returned %v without waiting for the quarantine", err)
	case <-time.After(time.Minute):
		t.Fatal("Program(b) neither waited nor returned")
	}
	if !d.mu.TryLock() {
		t.Fatal("Program sleeps holding the datapath lock")
	}
	d.mu.Unlock()
	// Another pod is programmed while b waits (a deadlock here is the old behaviour).
	other := make(chan error, 1)
	go func() { _, err := d.Program(c, isolated); other <- err }()
	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("Program(c) during the wait: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Program(c) blocked while Program(b) waited")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Program(b) after the grace period: %v", err)
	}
	got, err := d.ProgrammedRules(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Ingress.Entries); n != lists {
		t.Fatalf("b programmed with %d ingress entries, want %d", n, lists)
	}
	if waits != 1 {
		t.Fatalf("waited %d times, want once", waits)
	}
}

// TestProgramGivesUpWaiting: when waiting does not make room (here the quarantine
// never matures), Program reports ErrCapacity after maxQuarantineWaits attempts instead
// of looping, and leaves the pod as it was.
func TestProgramGivesUpWaiting(t *testing.T) {
	d := openEphemeral(t)
	const a, b = 41, 42
	for _, ifindex := range []int{a, b} {
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	lists := contract.MaxPortRules / contract.MaxPortRulesPerEntry
	isolated := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated}}
	if _, err := d.Program(a, fullPortRules(1, lists)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Program(a, isolated); err != nil {
		t.Fatal(err)
	}
	// Called without the lock, like the real sleep; the test takes it to move the
	// quarantine's end out of reach.
	waits := 0
	quarantineSleep = func(time.Duration) {
		waits++
		d.mu.Lock()
		for i := range d.idx.ports.quarantine {
			d.idx.ports.quarantine[i].until = time.Now().Add(time.Hour)
		}
		d.mu.Unlock()
	}
	t.Cleanup(func() { quarantineSleep = time.Sleep })
	_, err := d.Program(b, fullPortRules(2, lists))
	if !errors.Is(err, ErrCapacity) {
		t.Fatalf("Program(b) = %v, want ErrCapacity", err)
	}
	if waits != maxQuarantineWaits-1 {
		t.Fatalf("waited %d times, want %d", waits, maxQuarantineWaits-1)
	}
	if got, err := d.ProgrammedRules(b); err != nil || got.Ingress.State != rules.StateUnprogrammedDeny {
		t.Fatalf("b after the failure: %+v, %v; want untouched", got, err)
	}
}
