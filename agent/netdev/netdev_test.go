package netdev_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
)

func TestPrivilegedHostInterface(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	a := netdevtest.AddPod(t, "a", netip.MustParseAddr("10.201.0.2"))
	b := netdevtest.AddPod(t, "b", netip.MustParseAddr("10.201.0.3"))

	// A bridge with a subnet route: the way bridge CNIs wire pods.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "sgbr0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 202, 0, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	// A route through a gateway: a pod on another node.
	if err := netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 203, 0, 0), Mask: net.CIDRMask(24, 32)}, Gw: net.IPv4(10, 202, 0, 9)}); err != nil {
		t.Fatal(err)
	}

	if err := netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 205, 0, 0), Mask: net.CIDRMask(24, 32)}, Type: unix.RTN_UNREACHABLE}); err != nil {
		t.Fatal(err)
	}
	// An IPv6 pod address routed to a's veth, as dual-stack ptp does.
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: a.HostIndex, Dst: &net.IPNet{IP: net.ParseIP("fd00:201::2"), Mask: net.CIDRMask(128, 128)}, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	f := netdev.New(nil)
	for _, tc := range []struct {
		ip      string
		want    int
		wantErr error
	}{
		{ip: "10.201.0.2", want: a.HostIndex},
		{ip: "10.201.0.3", want: b.HostIndex},
		{ip: "::ffff:10.201.0.3", want: b.HostIndex},
		{ip: "fd00:201::2", want: a.HostIndex},
		{ip: "169.254.1.1", wantErr: netdev.ErrHostAddress},
		{ip: "127.0.0.1", wantErr: netdev.ErrHostAddress},
		{ip: "10.202.0.7", wantErr: netdev.ErrSharedDevice},
		{ip: "10.203.0.7", wantErr: netdev.ErrNotLocal},
		{ip: "10.204.0.7", wantErr: netdev.ErrNotLocal},          // the node's default route
		{ip: "10.205.0.7", wantErr: netdev.ErrNoRoute},           // an unreachable route
		{ip: "192.0.2.77", wantErr: netdev.ErrUnsupportedDevice}, // on the node's uplink subnet, as ipvlan pods are
	} {
		t.Run(tc.ip, func(t *testing.T) {
			got, err := f.HostInterface(netip.MustParseAddr(tc.ip))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("HostInterface(%s) = %v, %v; want error %v", tc.ip, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Index != tc.want || got.Kind != "veth" {
				t.Fatalf("HostInterface(%s) = %v, %v; want ifindex %d (veth)", tc.ip, got, err, tc.want)
			}
		})
	}

	// The plumbing itself carries traffic (the other packages' tests rely on it).
	b.ListenTCP(t, 8080)
	if err := a.ProbeTCP(b.IP, 8080, 2*time.Second); err != nil {
		t.Fatalf("pod a -> pod b over the test plumbing: %v", err)
	}
}
