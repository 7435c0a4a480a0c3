package datapath

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/rules"
)

// The netns harness: a "node" network namespace and several "pod" namespaces joined to
// it by veth pairs with /32 and /128 host routes, as the ptp CNI plugin does. Nothing
// touches the test process's own namespace; deleting the namespaces removes it all.
// Addresses: pods 10.200.0.N / fd00:200::N, the node side of every veth 10.200.0.254
// and fe80::1 (the pods' gateway).

var (
	nodeGW4 = netip.MustParseAddr("10.200.0.254")
	nodeGW6 = netip.MustParseAddr("fe80::1")
)

type nsEnv struct {
	t    *testing.T
	id   string
	node netns.NsHandle
	pods []*nsPod
}

type nsPod struct {
	env     *nsEnv
	name    string
	ns      netns.NsHandle
	hostIf  string
	ifindex int // of hostIf, in the node namespace
	v4, v6  netip.Addr
}

func randomID() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// inNS runs f on a thread switched to ns.
func inNS(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("leave netns: %w", err) // thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}

func newNamedNS(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		panic(fmt.Sprintf("cannot return to the original netns: %v", serr))
	}
	return h, err
}

func writeSysctl(path, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0o644)
}

// newNSEnv makes the node namespace and n pods.
func newNSEnv(t *testing.T, n int) *nsEnv {
	t.Helper()
	requireRoot(t)
	e := &nsEnv{t: t, id: randomID()}
	node, err := newNamedNS("sgt-" + e.id + "-node")
	if err != nil {
		t.Fatalf("create node netns: %v", err)
	}
	e.node = node
	t.Cleanup(e.cleanup)
	err = inNS(node, func() error {
		for _, s := range [][2]string{
			{"net/ipv4/ip_forward", "1"}, {"net/ipv6/conf/all/forwarding", "1"},
			{"net/ipv4/conf/all/rp_filter", "0"}, {"net/ipv4/conf/default/rp_filter", "0"},
		} {
			if err := writeSysctl(s[0], s[1]); err != nil {
				return err
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		t.Fatalf("set up node netns: %v", err)
	}
	for i := range n {
		e.addPod(i)
	}
	return e
}

func (e *nsEnv) addPod(i int) {
	t := e.t
	p := &nsPod{
		env:    e,
		name:   fmt.Sprintf("pod%d", i),
		hostIf: fmt.Sprintf("sg%s%d", e.id, i),
		v4:     netip.AddrFrom4([4]byte{10, 200, 0, byte(i + 1)}),
		v6:     netip.MustParseAddr(fmt.Sprintf("fd00:200::%d", i+1)),
	}
	ns, err := newNamedNS(fmt.Sprintf("sgt-%s-%s", e.id, p.name))
	if err != nil {
		t.Fatalf("create pod netns: %v", err)
	}
	p.ns = ns
	e.pods = append(e.pods, p)
	hn, err := netlink.NewHandleAt(e.node)
	if err != nil {
		t.Fatal(err)
	}
	defer hn.Close()
	hp, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer hp.Close()
	peer := "eth" + e.id + fmt.Sprint(i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.hostIf}, PeerName: peer, PeerNamespace: netlink.NsFd(int(ns))}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s %s: %v", p.name, what, err)
		}
	}
	must("add veth", hn.LinkAdd(veth))
	host, err := hn.LinkByName(p.hostIf)
	must("find host veth", err)
	p.ifindex = host.Attrs().Index
	must("gateway v4", hn.AddrAdd(host, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(nodeGW4, 32))}))
	must("gateway v6", hn.AddrAdd(host, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(nodeGW6, 64)), Flags: unix.IFA_F_NODAD}))
	must("host veth up", hn.LinkSetUp(host))
	for _, a := range []netip.Addr{p.v4, p.v6} {
		must("route to pod", hn.RouteAdd(&netlink.Route{LinkIndex: p.ifindex, Dst: prefixNet(netip.PrefixFrom(a, a.BitLen())), Scope: netlink.SCOPE_LINK}))
	}

	lo, err := hp.LinkByName("lo")
	must("find lo", err)
	must("lo up", hp.LinkSetUp(lo))
	eth, err := hp.LinkByName(peer)
	must("find pod veth", err)
	must("pod v4", hp.AddrAdd(eth, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(p.v4, 32))}))
	must("pod v6", hp.AddrAdd(eth, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(p.v6, 128)), Flags: unix.IFA_F_NODAD}))
	must("pod veth up", hp.LinkSetUp(eth))
	idx := eth.Attrs().Index
	must("route to gateway", hp.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: prefixNet(netip.PrefixFrom(nodeGW4, 32)), Scope: netlink.SCOPE_LINK}))
	must("default v4", hp.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: nodeGW4.AsSlice()}))
	must("default v6", hp.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: nodeGW6.AsSlice(), Dst: prefixNet(netip.MustParsePrefix("::/0"))}))
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (e *nsEnv) cleanup() {
	for _, p := range e.pods {
		p.ns.Close()
		netns.DeleteNamed(fmt.Sprintf("sgt-%s-%s", e.id, p.name))
	}
	e.node.Close()
	netns.DeleteNamed("sgt-" + e.id + "-node")
}

// inNode runs f in the node namespace (where the datapath attaches).
func (e *nsEnv) inNode(f func() error) error { return inNS(e.node, f) }

// openPinned opens a datapath pinned under a private root in bpffs.
func openPinned(t *testing.T, root string, opts Options) *Datapath {
	t.Helper()
	opts.PinRoot = root
	d, err := Open(opts)
	if err != nil {
		t.Fatalf("open datapath at %s: %v", root, err)
	}
	return d
}

// tempPinRoot returns a fresh pin root under /sys/fs/bpf, or, where no bpffs is mounted
// there, under a private bpffs mounted for the test.
func tempPinRoot(t *testing.T) string {
	base := "/sys/fs/bpf"
	if checkBPFFS(base) != nil {
		base = t.TempDir()
		if err := unix.Mount("bpf", base, "bpf", 0, ""); err != nil {
			t.Fatalf("no bpffs at /sys/fs/bpf and mounting a private one failed: %v", err)
		}
		t.Logf("no bpffs at /sys/fs/bpf: using a private one at %s", base)
		t.Cleanup(func() { unix.Unmount(base, unix.MNT_DETACH) })
	}
	root := filepath.Join(base, "sgtest-"+randomID())
	t.Cleanup(func() {
		// After a failed test: unpinning is enough (links detach with their last
		// reference; tc filters vanish with the test's namespaces).
		os.RemoveAll(root)
	})
	return root
}

// attachAll attaches every pod (strict: unprogrammed-deny) in the node namespace.
func (e *nsEnv) attachAll(d *Datapath) {
	e.t.Helper()
	err := e.inNode(func() error {
		for _, p := range e.pods {
			if _, err := d.Attach(p.ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("attach: %v", err)
	}
}

// Sockets: created inside the pod's namespace, then used from anywhere.

// serveTCP starts an echo server on port (both families) in the pod.
func (p *nsPod) serveTCP(port int) {
	t := p.env.t
	var l net.Listener
	err := inNS(p.ns, func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("%s listen tcp %d: %v", p.name, port, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// dialTCP connects from the pod.
func (p *nsPod) dialTCP(to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS(p.ns, func() (err error) {
		c, err = net.DialTimeout("tcp", to.String(), timeout)
		return err
	})
	return c, err
}

// udpEcho is a UDP server that echoes and counts datagrams per local port.
type udpEcho struct {
	mu     sync.Mutex
	counts map[int]int
}

func (u *udpEcho) count(port int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[port]
}

// serveUDP starts echoing UDP servers on ports in the pod.
func (p *nsPod) serveUDP(ports ...int) *udpEcho {
	t := p.env.t
	u := &udpEcho{counts: map[int]int{}}
	for _, port := range ports {
		var c net.PacketConn
		err := inNS(p.ns, func() (err error) {
			c, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
			return err
		})
		if err != nil {
			t.Fatalf("%s listen udp %d: %v", p.name, port, err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				u.mu.Lock()
				u.counts[port]++
				u.mu.Unlock()
				c.WriteTo(buf[:n], from)
			}
		}()
	}
	return u
}

// udpSocket opens an unconnected UDP socket in the pod.
func (p *nsPod) udpSocket() *net.UDPConn {
	t := p.env.t
	var c net.PacketConn
	err := inNS(p.ns, func() (err error) {
		c, err = net.ListenPacket("udp", ":0")
		return err
	})
	if err != nil {
		t.Fatalf("%s udp socket: %v", p.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// tcpWorks reports whether a connection from p to `to` opens and echoes a line.
func (p *nsPod) tcpWorks(to netip.AddrPort, timeout time.Duration) bool {
	c, err := p.dialTCP(to, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

// udpRoundTrip reports whether a datagram from p to `to` is echoed back.
func (p *nsPod) udpRoundTrip(to netip.AddrPort, timeout time.Duration) bool {
	c := p.udpSocket()
	defer c.Close()
	for range 3 {
		c.WriteToUDPAddrPort([]byte("ping"), to)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	return err == nil && string(buf[:n]) == "ping"
}

// hostPrefixes returns the /32 and /128 of pods.
func hostPrefixes(pods ...*nsPod) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range pods {
		out = append(out, netip.PrefixFrom(p.v4, 32), netip.PrefixFrom(p.v6, 128))
	}
	return out
}

func entriesFor(ports []rules.PortRule, pods ...*nsPod) []rules.Entry {
	var out []rules.Entry
	for _, pr := range hostPrefixes(pods...) {
		out = append(out, rules.Entry{Prefix: pr, Ports: ports})
	}
	return out
}

// attachedPrograms counts tcx programs and bpf tc filters on an interface of the node.
func (e *nsEnv) attachedPrograms(ifindex int) (tcx, filters int, clsact bool) {
	e.inNode(func() error {
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			if r, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at}); err == nil {
				tcx += len(r.Programs)
			}
		}
		l, err := netlink.LinkByIndex(ifindex)
		if err != nil {
			return err
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, _ := netlink.FilterList(l, parent)
			filters += len(fs)
		}
		qs, _ := netlink.QdiscList(l)
		for _, q := range qs {
			if q.Type() == "clsact" {
				clsact = true
			}
		}
		return nil
	})
	return
}

// attachedProgramIDs returns the ids of the programs attached to an interface (tcx or tc).
func (e *nsEnv) attachedProgramIDs(ifindex int) []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	e.inNode(func() error {
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			if r, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at}); err == nil {
				for _, p := range r.Programs {
					ids = append(ids, p.ID)
				}
			}
		}
		l, err := netlink.LinkByIndex(ifindex)
		if err != nil {
			return err
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, _ := netlink.FilterList(l, parent)
			for _, f := range fs {
				if bf, ok := f.(*netlink.BpfFilter); ok {
					ids = append(ids, ebpf.ProgramID(bf.Id))
				}
			}
		}
		return nil
	})
	return ids
}

// pinsLeft lists the files under a pin root.
func pinsLeft(root string) []string {
	var out []string
	filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	return out
}
