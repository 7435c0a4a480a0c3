package datapath

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/rules"
)

// TestPrivilegedNetnsNeighbourDiscoveryGlobalGateway: on a ptp-style link where the pod
// reaches the node through the gateway's *global* address, neighbour solicitations and
// advertisements carry global addresses both ways. A default-deny pod (isolated, no
// rules, both directions) must still resolve its gateway: TCP to a node address (passed
// as host traffic) works only if the ND exchange passes.
func TestPrivilegedNetnsNeighbourDiscoveryGlobalGateway(t *testing.T) {
	for _, tc := range []struct {
		name    string
		forceTC bool
	}{{"tcx", false}, {"cls_bpf", true}} {
		t.Run(tc.name, func(t *testing.T) {
			env := newNSEnv(t, 1)
			p := env.pods[0]
			gw := netip.MustParseAddr("fd00:200::fe")            // the gateway's global address
			svc := netip.MustParseAddrPort("[fd00:201::1]:8080") // a node address behind it
			hn, err := netlink.NewHandleAt(env.node)
			if err != nil {
				t.Fatal(err)
			}
			defer hn.Close()
			host, err := hn.LinkByIndex(p.ifindex)
			if err != nil {
				t.Fatal(err)
			}
			lo, err := hn.LinkByName("lo")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range []struct {
				l netlink.Link
				a netip.Addr
			}{{host, gw}, {lo, svc.Addr()}} {
				if err := hn.AddrAdd(a.l, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(a.a, 128)), Flags: unix.IFA_F_NODAD}); err != nil {
					t.Fatal(err)
				}
			}
			hp, err := netlink.NewHandleAt(p.ns)
			if err != nil {
				t.Fatal(err)
			}
			defer hp.Close()
			links, err := hp.LinkList()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range links {
				if l.Attrs().Name == "lo" {
					continue
				}
				idx := l.Attrs().Index
				if err := hp.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: prefixNet(netip.PrefixFrom(gw, 128)), Scope: netlink.SCOPE_LINK}); err != nil {
					t.Fatal(err)
				}
				if err := hp.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: prefixNet(netip.MustParsePrefix("fd00:201::/64")), Gw: gw.AsSlice()}); err != nil {
					t.Fatal(err)
				}
			}
			var l net.Listener
			if err := env.inNode(func() (err error) { l, err = net.Listen("tcp", svc.String()); return err }); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() { defer c.Close(); buf := make([]byte, 64); n, _ := c.Read(buf); c.Write(buf[:n]) }()
				}
			}()

			d := openPinned(t, tempPinRoot(t), Options{ForceTC: tc.forceTC})
			defer env.inNode(d.Remove)
			env.attachAll(d)
			// Only the service address is the node's: ND with the gateway must pass as ND,
			// not as host traffic.
			if err := d.SetHostAddrs([]netip.Addr{svc.Addr()}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Program(p.ifindex, &rules.PodRules{
				Ingress: rules.DirectionRules{State: rules.StateIsolated},
				Egress:  rules.DirectionRules{State: rules.StateIsolated},
			}); err != nil {
				t.Fatal(err)
			}
			if !p.tcpWorks(svc, okTimeout) {
				t.Fatalf("default-deny pod cannot reach the node through its global gateway %s: ND dropped?", gw)
			}
			// And policy still holds for everything else: the pod has no IPv6 peer.
			runFlowChecks(t, []flowCheck{{"other traffic denied", p, netip.MustParseAddrPort("[fd00:201::2]:8080"), false, false}})
			st, _ := d.Stats()
			t.Logf("stats %+v", st)
		})
	}
}
