package agent

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/rules"
)

// kernelDatapath adapts *datapath.Datapath to Datapath.
type kernelDatapath struct {
	d     *datapath.Datapath
	audit bool
}

// NewDatapath adapts an open datapath for the agent; audit is the per-pod audit switch
// every attached pod gets (ModeAudit), whatever the CNI plugin set.
func NewDatapath(d *datapath.Datapath, audit bool) Datapath { return kernelDatapath{d, audit} }

func (k kernelDatapath) Attach(ifindex int, initial rules.State) error {
	p, err := k.d.Attach(ifindex, initial, initial)
	if err != nil {
		return err
	}
	if p.Audit != k.audit {
		if err := k.d.SetAudit(ifindex, k.audit); err != nil {
			return fmt.Errorf("set audit %v on ifindex %d: %w", k.audit, ifindex, err)
		}
	}
	return nil
}

// Sweep deletes rules left behind by detaches in other processes (the CNI plugin).
func (k kernelDatapath) Sweep() error { return k.d.Sweep() }

func (k kernelDatapath) Program(ifindex int, r *rules.PodRules) error {
	_, err := k.d.Program(ifindex, r)
	return err
}

// Programmed compares the pod entry the kernel uses (states, attachment) and the digest
// of the rules last written for it with r.
func (k kernelDatapath) Programmed(ifindex int, r *rules.PodRules) (bool, error) {
	p, err := k.d.Pod(ifindex)
	if errors.Is(err, datapath.ErrNoPod) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if p.Attach == datapath.AttachNone || p.Ingress != r.Ingress.State || p.Egress != r.Egress.State {
		return false, nil
	}
	return p.Digest != 0 && p.Digest == datapath.RulesDigest(r), nil
}

func (k kernelDatapath) Close(ifindex int) error {
	for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
		if _, err := k.d.SetState(ifindex, d, rules.StateUnprogrammedDeny); err != nil {
			return fmt.Errorf("close %s of ifindex %d: %w", d, ifindex, err)
		}
	}
	return nil
}

func (k kernelDatapath) Detach(ifindex int) error { return k.d.Detach(ifindex) }

func (k kernelDatapath) Attached() ([]int, error) {
	pods, err := k.d.Pods()
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.Ifindex)
	}
	return out, nil
}

func (k kernelDatapath) SetHostAddrs(addrs []netip.Addr) error { return k.d.SetHostAddrs(addrs) }
