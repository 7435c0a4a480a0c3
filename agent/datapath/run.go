package datapath

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/strictgate/strictgate/agent/rules"
)

// Result is the datapath's decision for one packet run through RunPacket.
type Result struct {
	Verdict Verdict
	Rule    rules.RuleID
	Reason  Reason
	// Generation of the pod when the packet was judged.
	Generation uint32
}

const (
	tcActShot   = 2
	tcActUnspec = 0xffffffff // TC_ACT_UNSPEC (-1): pass on to the next program
)

// RunPacket runs one Ethernet frame through the real program of direction dir for the
// pod registered as ifindex (Register or Attach), with BPF_PROG_TEST_RUN: no interface
// is needed. The kernel's maps are used and updated exactly as for a real packet
// (conntrack, counters, events). The frame must start with an Ethernet header; the
// packet subpackage builds them.
//
// Test runs execute on the loopback device; the program then takes the pod key from
// the skb mark instead of the interface index (it is never attached to loopback).
func (d *Datapath) RunPacket(ifindex int, dir rules.Direction, frame []byte) (Result, error) {
	if dir != rules.Ingress && dir != rules.Egress {
		return Result{}, fmt.Errorf("run packet: unknown direction %d", dir)
	}
	if len(frame) < 14 {
		return Result{}, fmt.Errorf("run packet: %d bytes is shorter than an Ethernet header", len(frame))
	}
	in := bpfSgSkbCtx{Mark: uint32(ifindex)}
	var out bpfSgSkbCtx
	ret, err := d.program(dir).Run(&ebpf.RunOptions{Data: frame, Context: &in, ContextOut: &out})
	if err != nil {
		return Result{}, fmt.Errorf("run packet through %s program: %w", dir, err)
	}
	tr := bpfSgTestResult{Verdict: out.Cb[0], Rule: out.Cb[1], Reason: out.Cb[2], Generation: out.Cb[3], Magic: out.Cb[4]}
	if tr.Magic != testMagic {
		return Result{}, fmt.Errorf("run packet: program returned %d without a result", int32(ret))
	}
	r := Result{Verdict: Verdict(tr.Verdict), Rule: rules.RuleID(tr.Rule), Reason: Reason(tr.Reason), Generation: tr.Generation}
	if want := uint32(tcActUnspec); r.Verdict == VerdictDeny {
		want = tcActShot
		if ret != want {
			return r, fmt.Errorf("run packet: verdict %s but program returned %d", r.Verdict, int32(ret))
		}
	} else if ret != want {
		return r, fmt.Errorf("run packet: verdict %s but program returned %d", r.Verdict, int32(ret))
	}
	if r.Reason == ReasonNoPod {
		return r, fmt.Errorf("run packet: %w: ifindex %d", ErrNoPod, ifindex)
	}
	return r, nil
}

// loopbackIfindex is SG_LOOPBACK_IFINDEX: test runs execute on lo.
const loopbackIfindex = 1

// testMagic is SG_TEST_MAGIC of strictgate.h ("SGTR").
const testMagic = 0x53475452
