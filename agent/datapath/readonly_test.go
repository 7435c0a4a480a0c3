package datapath

import (
	"errors"
	"reflect"
	"testing"

	"github.com/strictgate/strictgate/agent/rules"
)

// TestPrivilegedOpenReadOnly: a read-only handle sees what the writer programmed, and
// the kernel refuses writes through it.
func TestPrivilegedOpenReadOnly(t *testing.T) {
	requireRoot(t)
	root := tempPinRoot(t)
	if _, err := OpenReadOnly(root); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("OpenReadOnly of an empty root: %v, want ErrNotPinned", err)
	}
	w := openPinned(t, root, Options{})
	t.Cleanup(func() { w.Remove() })
	const ifindex = 4242 // Register needs no interface
	if _, err := w.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	want := &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: []rules.Entry{{Prefix: mustPrefix("10.1.0.0/16"), Ports: []rules.PortRule{tcpRule(80, 81, 7)}}}},
		Egress:  rules.DirectionRules{State: rules.StateUnisolated},
	}
	if _, err := w.Program(ifindex, want); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(root)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	wp, _ := w.Pod(ifindex)
	rp, err := ro.Pod(ifindex)
	if err != nil || rp != wp {
		t.Fatalf("read-only Pod = %+v, %v; writer sees %+v", rp, err, wp)
	}
	got, err := ro.ProgrammedRules(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	if RulesDigest(got) != RulesDigest(want) || !reflect.DeepEqual(got.Ingress.Entries, want.Ingress.Entries) {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
	if _, err := ro.SetState(ifindex, rules.Ingress, rules.StateUnisolated); err == nil {
		t.Fatal("SetState through a read-only handle succeeded")
	}
	if after, _ := w.Pod(ifindex); after != wp {
		t.Fatalf("pod entry changed: %+v → %+v", wp, after)
	}
}
