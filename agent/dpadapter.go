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
	d *datapath.Datapath
}

// NewDatapath adapts an open datapath for the agent.
func NewDatapath(d *datapath.Datapath) Datapath { return kernelDatapath{d} }

func (k kernelDatapath) Attach(ifindex int, initial rules.State) error {
	_, err := k.d.Attach(ifindex, initial, initial)
	return err
}

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
