// Package netdev finds the host-side network interface of a pod from its IP address.
//
// It asks the kernel which interface it would use to reach the pod (a route lookup, as
// `ip route get` does) instead of knowing how a particular CNI names its devices, so it
// works the same with ptp, AWS VPC CNI, Calico and anything else that gives each pod a
// point-to-point device with a host route. CNIs that put pods behind a shared bridge are
// refused: a program on the bridge would judge every pod at once.
package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sentinel errors, for errors.Is.
var (
	// ErrNoRoute means the kernel has no route to the address.
	ErrNoRoute = errors.New("no route to pod address")
	// ErrHostAddress means the address is one of the node's own: a host-network pod.
	ErrHostAddress = errors.New("pod address is a host address")
	// ErrNotLocal means the address is reached through a gateway: the pod is not on this node.
	ErrNotLocal = errors.New("pod address is not on this node")
	// ErrSharedDevice means the route leads to a bridge or another device shared by
	// several pods, where a per-pod program cannot be attached.
	ErrSharedDevice = errors.New("pod is behind a shared device")
	// ErrUnsupportedDevice means the route leads to a device that is not known to be a
	// pod's own (ipvlan/macvlan pods are reached through the node's uplink, for example):
	// attaching there would judge the node's traffic as the pod's.
	ErrUnsupportedDevice = errors.New("pod's route leads to an unsupported device")
)

// podDeviceKinds are the link types CNIs give each pod on the host side: veth (ptp,
// AWS VPC CNI, Calico, Cilium) and netkit (Cilium's newer per-pod device).
var podDeviceKinds = map[string]bool{"veth": true, "netkit": true}

// Interface is the host side of a pod's network connection.
type Interface struct {
	Index int
	Name  string
	// Kind is the netlink link type ("veth", "ipvlan", ...).
	Kind string
}

func (i Interface) String() string {
	return fmt.Sprintf("%s (ifindex %d, %s)", i.Name, i.Index, i.Kind)
}

// Finder looks interfaces up in one network namespace.
type Finder struct {
	h *netlink.Handle
}

// New returns a Finder for the namespace of handle h; nil means the caller's namespace.
func New(h *netlink.Handle) *Finder {
	if h == nil {
		h = &netlink.Handle{}
	}
	return &Finder{h: h}
}

// HostInterface returns the interface through which this host reaches pod address ip.
func (f *Finder) HostInterface(ip netip.Addr) (Interface, error) {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return Interface{}, fmt.Errorf("find interface: invalid address")
	}
	routes, err := f.h.RouteGet(net.IP(ip.AsSlice()))
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return Interface{}, fmt.Errorf("route to %s: %w", ip, ErrNoRoute)
		}
		return Interface{}, fmt.Errorf("route to %s: %w", ip, err)
	}
	if len(routes) == 0 {
		return Interface{}, fmt.Errorf("route to %s: %w", ip, ErrNoRoute)
	}
	r := routes[0]
	switch {
	case r.Type == unix.RTN_LOCAL:
		return Interface{}, fmt.Errorf("route to %s: %w", ip, ErrHostAddress)
	case r.Type == unix.RTN_UNREACHABLE || r.Type == unix.RTN_BLACKHOLE || r.Type == unix.RTN_PROHIBIT:
		return Interface{}, fmt.Errorf("route to %s: %w", ip, ErrNoRoute)
	case r.Gw != nil || len(r.MultiPath) > 0 || r.Via != nil:
		return Interface{}, fmt.Errorf("route to %s goes through a gateway: %w", ip, ErrNotLocal)
	case r.LinkIndex <= 0:
		return Interface{}, fmt.Errorf("route to %s: %w", ip, ErrNoRoute)
	}
	link, err := f.h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return Interface{}, fmt.Errorf("link %d for %s: %w", r.LinkIndex, ip, err)
	}
	a := link.Attrs()
	in := Interface{Index: a.Index, Name: a.Name, Kind: link.Type()}
	if a.Flags&net.FlagLoopback != 0 {
		return Interface{}, fmt.Errorf("route to %s: %w", ip, ErrHostAddress)
	}
	switch in.Kind {
	case "bridge", "openvswitch", "vxlan", "geneve", "ipip", "gre", "wireguard":
		return Interface{}, fmt.Errorf("route to %s leads to %s: %w", ip, in, ErrSharedDevice)
	}
	if !podDeviceKinds[in.Kind] {
		return Interface{}, fmt.Errorf("route to %s leads to %s: %w", ip, in, ErrUnsupportedDevice)
	}
	// Node uplinks can be veths too (kind and other nodes-in-containers). A pod's host
	// device carries no subnet of its own (at most a /32 or /128 gateway address) and no
	// default route.
	if uplink, why := f.isUplink(link); uplink {
		return Interface{}, fmt.Errorf("route to %s leads to %s, which %s: %w", ip, in, why, ErrUnsupportedDevice)
	}
	return in, nil
}

func (f *Finder) isUplink(link netlink.Link) (bool, string) {
	addrs, err := f.h.AddrList(link, netlink.FAMILY_ALL)
	if err == nil {
		for _, a := range addrs {
			ones, bits := a.Mask.Size()
			ip, _ := netip.AddrFromSlice(a.IP)
			if ones < bits && !ip.Unmap().IsLinkLocalUnicast() {
				return true, "has the subnet " + a.IPNet.String()
			}
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := f.h.RouteListFiltered(fam, &netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			continue
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
				return true, "carries a default route"
			}
		}
	}
	return false, ""
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// ByIndex returns the interface with ifindex, to check that an adopted attachment still
// points at a live device.
func (f *Finder) ByIndex(ifindex int) (Interface, error) {
	link, err := f.h.LinkByIndex(ifindex)
	if err != nil {
		return Interface{}, fmt.Errorf("link %d: %w", ifindex, err)
	}
	a := link.Attrs()
	return Interface{Index: a.Index, Name: a.Name, Kind: link.Type()}, nil
}
