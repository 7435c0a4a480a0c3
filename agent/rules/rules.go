// Package rules is the contract between the policy compiler (agent/compile) and the
// datapath (agent/datapath): a pod's NetworkPolicy, flattened into the form the kernel
// looks up, and a Go model of that lookup.
//
// A direction's rules are a set of address prefixes, each owning the addresses for which
// it is the longest match. A prefix carries the port rules that allow traffic to (egress)
// or from (ingress) the addresses it owns; a prefix with no port rules is a hole (an
// ipBlock `except`) that denies what a shorter prefix would allow. The compiler resolves
// unions, excepts and named ports before this point, so the datapath never has to.
package rules

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/strictgate/strictgate/internal/contract"
)

// The datapath's vocabulary is the contract's (generated from bpf/include); rules
// names it as the compiler and the datapath have always spelled it.
type (
	// Direction is the direction of traffic as seen from the pod.
	Direction = contract.Direction
	// State is what a direction of a pod does with traffic that no conntrack entry allows.
	State = contract.State
	// RuleID names the policy rule that decided a verdict. IDs are assigned by the
	// compiler and resolved back to policy names through its rule table; the special
	// ones below are the datapath's.
	RuleID = contract.RuleID
	// Verdict is the outcome of a lookup.
	Verdict = contract.Verdict
)

const (
	// Ingress is traffic towards the pod.
	Ingress = contract.Ingress
	// Egress is traffic leaving the pod.
	Egress = contract.Egress

	// StateUnprogrammedDeny drops everything: strict mode before the agent programmed the pod.
	StateUnprogrammedDeny = contract.StateUnprogrammedDeny
	// StateUnprogrammedAllow passes everything: standard mode before programming.
	StateUnprogrammedAllow = contract.StateUnprogrammedAllow
	// StateIsolated drops what no rule allows: some policy selects the pod in this direction.
	StateIsolated = contract.StateIsolated
	// StateUnisolated passes everything: no policy selects the pod in this direction.
	StateUnisolated = contract.StateUnisolated

	// RuleNone means no rule matched: the default deny of an isolated pod.
	RuleNone = contract.RuleNone
	// RuleUnisolated means the pod is not selected by any policy in that direction.
	RuleUnisolated = contract.RuleUnisolated
	// RuleUnprogrammed means the pod had not been programmed yet.
	RuleUnprogrammed = contract.RuleUnprogrammed
	// RuleHost means the traffic was with the pod's own node (kubelet probes).
	RuleHost = contract.RuleHost
	// RuleConntrack means the packet belonged to a connection allowed earlier.
	RuleConntrack = contract.RuleConntrack

	// Deny and Allow are the verdicts a lookup returns (audit is the datapath's alone).
	Deny  = contract.VerdictDeny
	Allow = contract.VerdictAllow
)

// Protocol is an IP protocol number; ProtocolAny matches every protocol.
type Protocol uint8

const (
	ProtocolAny  Protocol = 0
	ProtocolICMP Protocol = 1
	ProtocolTCP  Protocol = 6
	ProtocolUDP  Protocol = 17
	ProtocolSCTP Protocol = 132
	// ProtocolICMPv6 is listed so that logs can name it; policies cannot select it.
	ProtocolICMPv6 Protocol = 58
)

func (p Protocol) String() string {
	switch p {
	case ProtocolAny:
		return "ANY"
	case ProtocolICMP:
		return "ICMP"
	case ProtocolTCP:
		return "TCP"
	case ProtocolUDP:
		return "UDP"
	case ProtocolSCTP:
		return "SCTP"
	case ProtocolICMPv6:
		return "ICMPv6"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// ParseProtocol maps a Kubernetes protocol name to its number.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "TCP", "":
		return ProtocolTCP, nil
	case "UDP":
		return ProtocolUDP, nil
	case "SCTP":
		return ProtocolSCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: want TCP, UDP or SCTP", s)
}

// PortRule allows one protocol (or any) on a range of destination ports. First == 0 and
// Last == 65535 is every port; ports are ignored for protocols without them.
type PortRule struct {
	Protocol Protocol
	First    uint16
	Last     uint16
	Rule     RuleID
}

// AnyPort reports whether the rule covers every port.
func (p PortRule) AnyPort() bool { return p.First == 0 && p.Last == 65535 }

// Matches reports whether a packet of proto to port is allowed by p.
func (p PortRule) Matches(proto Protocol, port uint16) bool {
	if p.Protocol != ProtocolAny && p.Protocol != proto {
		return false
	}
	return p.AnyPort() || (port >= p.First && port <= p.Last)
}

// Entry is one prefix of a direction's rule set. Prefix is canonical (masked); IPv4
// prefixes are plain IPv4 (the datapath maps them into IPv6 space itself).
type Entry struct {
	Prefix netip.Prefix
	// Ports allow traffic to/from the addresses Prefix owns; empty means deny them.
	Ports []PortRule
}

// DirectionRules is one direction of a pod's compiled policy.
type DirectionRules struct {
	State   State
	Entries []Entry
}

// PodRules is a pod's compiled policy for both directions.
type PodRules struct {
	Ingress DirectionRules
	Egress  DirectionRules
}

// Dir returns the rules of direction d.
func (r *PodRules) Dir(d Direction) *DirectionRules {
	if d == Ingress {
		return &r.Ingress
	}
	return &r.Egress
}

// Lookup is the Go model of the datapath's decision for the first packet of a flow in
// direction d: remote is the peer's address (source for ingress, destination for
// egress), port the destination port. It returns the verdict and the rule that decided.
// The kernel program must agree with it on every input.
func (r *DirectionRules) Lookup(remote netip.Addr, proto Protocol, port uint16) (Verdict, RuleID) {
	switch r.State {
	case StateUnprogrammedDeny:
		return Deny, RuleUnprogrammed
	case StateUnprogrammedAllow:
		return Allow, RuleUnprogrammed
	case StateUnisolated:
		return Allow, RuleUnisolated
	}
	remote = remote.Unmap()
	best := -1
	for i, e := range r.Entries {
		if e.Prefix.Contains(remote) && (best < 0 || e.Prefix.Bits() > r.Entries[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return Deny, RuleNone
	}
	for _, p := range r.Entries[best].Ports {
		if p.Matches(proto, port) {
			return Allow, p.Rule
		}
	}
	return Deny, RuleNone
}

// Normalize sorts entries by prefix and port rules by (protocol, first, last, rule) so
// that equal rule sets compare and print equal.
func (r *DirectionRules) Normalize() {
	for i := range r.Entries {
		slices.SortFunc(r.Entries[i].Ports, ComparePortRules)
	}
	slices.SortFunc(r.Entries, func(a, b Entry) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
}

// ComparePortRules orders port rules for Normalize.
func ComparePortRules(a, b PortRule) int {
	switch {
	case a.Protocol != b.Protocol:
		return int(a.Protocol) - int(b.Protocol)
	case a.First != b.First:
		return int(a.First) - int(b.First)
	case a.Last != b.Last:
		return int(a.Last) - int(b.Last)
	}
	return int(int64(a.Rule) - int64(b.Rule))
}
