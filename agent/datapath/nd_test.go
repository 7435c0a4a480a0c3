package datapath

import (
	"testing"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
)

// TestPrivilegedRunPacketNeighbourDiscovery: under default deny (isolated, no rules) and
// in a strict unprogrammed pod, IPv6 neighbour discovery passes when its hop limit is
// 255 (RFC 4861: it cannot have been routed), whatever the peer address (ptp solicits
// the gateway's global address), and MLD passes at hop limit 1 from a link-local source
// or from :: (DAD). Every look-alike with another hop limit or source is judged by
// policy like any ICMPv6, i.e. dropped here.
func TestPrivilegedRunPacketNeighbourDiscovery(t *testing.T) {
	d := openEphemeral(t)
	const (
		isolated     = 200
		unprogrammed = 201
	)
	for _, ifindex := range []int{isolated, unprogrammed} {
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	// Default deny both ways: the generated default-deny policy.
	if _, err := d.Program(isolated, &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateIsolated},
		Egress:  rules.DirectionRules{State: rules.StateIsolated},
	}); err != nil {
		t.Fatal(err)
	}
	var (
		pod       = mustAddr("fd00:10::5") // the pod's global address
		podLL     = mustAddr("fe80::a8c1:abff:fe12:3456")
		gw        = mustAddr("fd00:10::1") // ptp: the gateway's global address
		gwLL      = mustAddr("fe80::1")
		far       = mustAddr("2001:db8:77::9")    // beyond the link
		solicited = mustAddr("ff02::1:ff12:3456") // solicited-node group of ...:12:3456
		unspec    = mustAddr("::")
		allNodes  = mustAddr("ff02::1")
		allRtrs   = mustAddr("ff02::2")
		mldv2     = mustAddr("ff02::16")
	)
	E, I := rules.Egress, rules.Ingress
	pass := func(name string, dir rules.Direction, frame []byte) runCase {
		return runCase{name, dir, frame, VerdictAllow, rules.RuleNone, ReasonLinkLocal}
	}
	ctl := packet.ICMPv6Control
	cases := func(denyRule rules.RuleID) []runCase {
		drop := func(name string, dir rules.Direction, frame []byte) runCase {
			return runCase{name, dir, frame, VerdictDeny, denyRule, ReasonPolicy}
		}
		return []runCase{
			// Neighbour discovery, hop limit 255.
			pass("NS to the gateway's global address (ptp)", E, packet.NeighborSolicitation(pod, gw, gw, 255)),
			pass("NA from the pod's global address to the gateway", E, ctl(packet.NeighborAdvertisement, pod, gw, 255)),
			pass("NS from the gateway's global address", I, packet.NeighborSolicitation(gw, pod, pod, 255)),
			pass("NA from the gateway's global address", I, ctl(packet.NeighborAdvertisement, gw, pod, 255)),
			pass("NS to a solicited-node group", E, packet.NeighborSolicitation(pod, mustAddr("ff02::1:ff00:1"), gw, 255)),
			pass("NS link-local to link-local", I, packet.NeighborSolicitation(gwLL, podLL, podLL, 255)),
			pass("DAD: NS from :: to the solicited-node group", E, packet.NeighborSolicitation(unspec, solicited, podLL, 255)),
			pass("RS to all routers", E, ctl(packet.RouterSolicitation, podLL, allRtrs, 255)),
			pass("RS from :: (no address yet)", E, ctl(packet.RouterSolicitation, unspec, allRtrs, 255)),
			pass("RA to all nodes", I, ctl(packet.RouterAdvertisement, gwLL, allNodes, 255)),
			pass("redirect", I, ctl(packet.Redirect, gwLL, podLL, 255)),
			// MLD, hop limit 1 from link-local or ::.
			pass("MLDv2 report from link-local", E, ctl(packet.MLDv2Report, podLL, mldv2, 1)),
			pass("MLDv2 report from :: (DAD)", E, ctl(packet.MLDv2Report, unspec, mldv2, 1)),
			pass("MLDv1 report", E, ctl(packet.MLDReport, podLL, solicited, 1)),
			pass("MLD done", E, ctl(packet.MLDDone, podLL, allRtrs, 1)),
			pass("MLD query from the gateway", I, ctl(packet.MLDQuery, gwLL, allNodes, 1)),
			// Look-alikes that may have been routed, or MLD from a global source: policy.
			drop("NS with hop limit 64 to a global address", E, packet.NeighborSolicitation(pod, far, far, 64)),
			drop("NS with hop limit 64 from a global address", I, packet.NeighborSolicitation(far, pod, pod, 64)),
			drop("NS with hop limit 254 (routed once) between link-local addresses", I, packet.NeighborSolicitation(gwLL, podLL, podLL, 254)),
			drop("NA with hop limit 64 to the gateway", E, ctl(packet.NeighborAdvertisement, pod, gw, 64)),
			drop("RA with hop limit 1", I, ctl(packet.RouterAdvertisement, gwLL, allNodes, 1)),
			drop("redirect with hop limit 64", I, ctl(packet.Redirect, far, pod, 64)),
			drop("MLD report from a global source", E, ctl(packet.MLDv2Report, pod, mldv2, 1)),
			drop("MLD query from a global source", I, ctl(packet.MLDQuery, far, allNodes, 1)),
			drop("MLD report with hop limit 2", E, ctl(packet.MLDv2Report, podLL, mldv2, 2)),
			drop("MLD report with hop limit 255", E, ctl(packet.MLDv2Report, podLL, mldv2, 255)),
			drop("echo request with hop limit 255 is no ND", E, ctl(128, pod, gw, 255)),
			drop("echo request to a link-local peer", E, ctl(128, podLL, gwLL, 1)),
			drop("unassigned ICMPv6 type next to ND", E, ctl(138, podLL, allNodes, 255)),
		}
	}
	t.Run("isolated", func(t *testing.T) { runCases(t, d, isolated, cases(rules.RuleNone)) })
	t.Run("unprogrammed-deny", func(t *testing.T) { runCases(t, d, unprogrammed, cases(rules.RuleUnprogrammed)) })

	// Passing ND/MLD creates no conntrack entry: a later routed look-alike between the
	// same addresses is still judged.
	if got, err := d.RunPacket(isolated, E, packet.NeighborSolicitation(pod, gw, gw, 255)); err != nil || got.Verdict != VerdictAllow {
		t.Fatalf("NS: %+v, %v", got, err)
	}
	if got, err := d.RunPacket(isolated, E, packet.NeighborSolicitation(pod, gw, gw, 64)); err != nil || got.Verdict != VerdictDeny {
		t.Errorf("routed NS after a link NS between the same addresses: %+v, %v; want deny", got, err)
	}
}
