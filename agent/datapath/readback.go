package datapath

import (
	"fmt"
	"slices"

	"github.com/strictgate/strictgate/agent/rules"
)

// ProgrammedRules reads a pod's rules back from the kernel maps (states, prefixes and
// their port rules in kernel order), normalized with rules.DirectionRules.Normalize
// except that port-rule order is kept. The agent can compare them with what it
// computed; Pod.Digest is the cheap check.
func (d *Datapath) ProgrammedRules(ifindex int) (*rules.PodRules, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pod, err := d.lookupPod(ifindex)
	if err != nil {
		return nil, err
	}
	var sets [2][]bpfSgLpmKey
	want := map[uint32]int{}
	for dir := range 2 {
		if pod.Dir[dir].State == uint8(rules.StateIsolated) {
			want[pod.Dir[dir].Ruleset] = dir
		}
	}
	if d.idx != nil {
		for id, dir := range want {
			if s := d.idx.sets[id]; s != nil {
				sets[dir] = append(sets[dir], s.keys...)
			}
		}
	} else {
		var (
			k bpfSgLpmKey
			v bpfSgLpmVal
		)
		it := d.objs.SgRules.Iterate()
		for it.Next(&k, &v) {
			if dir, ok := want[k.Ruleset]; ok {
				sets[dir] = append(sets[dir], k)
			}
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read rule trie: %w", err)
		}
	}
	out := &rules.PodRules{}
	for dir := range 2 {
		dr := out.Dir(rules.Direction(dir))
		dr.State = rules.State(pod.Dir[dir].State)
		for _, k := range sets[dir] {
			var v bpfSgLpmVal
			if err := d.objs.SgRules.Lookup(&k, &v); err != nil {
				return nil, fmt.Errorf("read prefix %s: %w", keyPrefix(k), err)
			}
			e := rules.Entry{Prefix: keyPrefix(k)}
			for i := uint32(0); i < v.Count; i++ {
				var pr bpfSgPortRule
				if err := d.objs.SgPortRules.Lookup(v.Offset+i, &pr); err != nil {
					return nil, fmt.Errorf("read port rule: %w", err)
				}
				e.Ports = append(e.Ports, rules.PortRule{Protocol: rules.Protocol(pr.Proto), First: pr.FirstPortHost, Last: pr.LastPortHost, Rule: rules.RuleID(pr.Rule)})
			}
			dr.Entries = append(dr.Entries, e)
		}
		sortEntries(dr.Entries)
	}
	return out, nil
}

// sortEntries orders entries like rules.DirectionRules.Normalize, leaving port order alone.
func sortEntries(es []rules.Entry) {
	slices.SortFunc(es, func(a, b rules.Entry) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
}
