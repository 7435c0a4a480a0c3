package datapath

import (
	"fmt"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// Counter is a number of packets and their bytes.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// PodCounters are one pod's counters since it was registered, by direction
// (rules.Ingress, rules.Egress) and verdict (VerdictDeny, VerdictAllow, VerdictAudit).
type PodCounters struct {
	Ifindex int
	Slot    uint32
	ByDir   [2][contract.NumVerdicts]Counter
}

// Get returns the counter of a direction and verdict.
func (c PodCounters) Get(dir rules.Direction, v Verdict) Counter {
	if int(dir) > 1 || int(v) >= contract.NumVerdicts {
		return Counter{}
	}
	return c.ByDir[dir][v]
}

// Counters returns the counters of every pod, summed over CPUs.
func (d *Datapath) Counters() ([]PodCounters, error) {
	pods, err := d.Pods()
	if err != nil {
		return nil, err
	}
	out := make([]PodCounters, 0, len(pods))
	for _, p := range pods {
		c, err := d.slotCounters(p.Slot)
		if err != nil {
			return nil, err
		}
		c.Ifindex = p.Ifindex
		out = append(out, c)
	}
	return out, nil
}

// PodCounters returns the counters of one pod.
func (d *Datapath) PodCounters(ifindex int) (PodCounters, error) {
	p, err := d.Pod(ifindex)
	if err != nil {
		return PodCounters{}, err
	}
	c, err := d.slotCounters(p.Slot)
	c.Ifindex = ifindex
	return c, err
}

func (d *Datapath) slotCounters(slot uint32) (PodCounters, error) {
	c := PodCounters{Slot: slot}
	var per []bpfSgCounter
	for dir := uint32(0); dir < 2; dir++ {
		for v := uint32(0); v < contract.NumVerdicts; v++ {
			if err := d.objs.SgCounters.Lookup(counterIndex(slot, dir, v), &per); err != nil {
				return c, fmt.Errorf("read counters of slot %d: %w", slot, err)
			}
			for _, p := range per {
				c.ByDir[dir][v].Packets += p.Packets
				c.ByDir[dir][v].Bytes += p.Bytes
			}
		}
	}
	return c, nil
}

// Stats are node-wide datapath statistics, summed over CPUs.
type Stats struct {
	// NoPod counts packets on an interface without a pod entry (dropped).
	NoPod uint64
	// Unparseable counts packets that could not be judged (dropped unless the direction was open).
	Unparseable uint64
	// FragmentUnknown counts non-first IP fragments whose first fragment was not seen.
	FragmentUnknown uint64
	// ConntrackCreated counts conntrack entries created.
	ConntrackCreated uint64
	// ConntrackRecheckDenied counts connections cut because a new policy denies them.
	ConntrackRecheckDenied uint64
	// ConntrackExpired counts entries found expired.
	ConntrackExpired uint64
	// EventsSent, EventsRateLimited and EventsLost (ring buffer full) count events.
	EventsSent        uint64
	EventsRateLimited uint64
	EventsLost        uint64
}

// Stats reads the node-wide statistics.
func (d *Datapath) Stats() (Stats, error) {
	var s Stats
	fields := map[bpfSgStat]*uint64{
		bpfSgStatSG_STAT_NO_POD:             &s.NoPod,
		bpfSgStatSG_STAT_UNPARSEABLE:        &s.Unparseable,
		bpfSgStatSG_STAT_FRAGMENT_UNKNOWN:   &s.FragmentUnknown,
		bpfSgStatSG_STAT_CT_CREATED:         &s.ConntrackCreated,
		bpfSgStatSG_STAT_CT_RECHECK_DENIED:  &s.ConntrackRecheckDenied,
		bpfSgStatSG_STAT_CT_EXPIRED:         &s.ConntrackExpired,
		bpfSgStatSG_STAT_EVENTS_SENT:        &s.EventsSent,
		bpfSgStatSG_STAT_EVENTS_RATELIMITED: &s.EventsRateLimited,
		bpfSgStatSG_STAT_EVENTS_LOST:        &s.EventsLost,
	}
	var per []uint64
	for k, dst := range fields {
		if err := d.objs.SgStats.Lookup(uint32(k), &per); err != nil {
			return s, fmt.Errorf("read stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}
