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
	d       *datapath.Datapath
	auditOn bool
}

// NewDatapath adapts an open datapath for the agent; audit is the per-pod audit switch
// every attached pod gets (contract.ModeAudit), whatever the CNI plugin set.
func NewDatapath(d *datapath.Datapath, audit bool) Datapath { return kernelDatapath{d, audit} }

func (k kernelDatapath) Register(ifindex int, initial rules.State) error {
	p, err := k.d.Register(ifindex, initial, initial)
	if err != nil {
		return err
	}
	return k.audit(p)
}

func (k kernelDatapath) Attach(ifindex int, initial rules.State) error {
	p, err := k.d.Attach(ifindex, initial, initial)
	if err != nil {
		return err
	}
	return k.audit(p)
}

// audit makes the pod's audit switch follow the agent's mode, whatever the CNI plugin set.
func (k kernelDatapath) audit(p datapath.Pod) error {
	if p.Audit == k.auditOn {
		return nil
	}
	if err := k.d.SetAudit(p.Ifindex, k.auditOn); err != nil {
		return fmt.Errorf("set audit %v on ifindex %d: %w", k.auditOn, p.Ifindex, err)
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
// of the rules last written for it with r; deep also reads the rule maps back and
// compares what they hold.
func (k kernelDatapath) Programmed(ifindex int, r *rules.PodRules, deep bool) (bool, bool, error) {
	p, err := k.d.Pod(ifindex)
	if errors.Is(err, datapath.ErrNoPod) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	want := datapath.RulesDigest(r)
	rulesOK := p.Ingress == r.Ingress.State && p.Egress == r.Egress.State && p.Digest == want
	attached := p.Attach != datapath.AttachNone
	if !rulesOK || !deep {
		return rulesOK, attached, nil
	}
	got, err := k.d.ProgrammedRules(ifindex)
	if err != nil {
		return false, attached, fmt.Errorf("read back rules of ifindex %d: %w", ifindex, err)
	}
	return datapath.RulesDigest(got) == want, attached, nil
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
