// Package netdevtest builds the network plumbing tests need: a private "node" network
// namespace for the whole test process and netns "pods" joined to it by veth pairs with
// /32 host routes, the way the ptp CNI plugin wires pods.
//
// Tests run in their own network namespace (Isolate) so that their routes and devices
// never touch the machine's real network and parallel test runs cannot collide.
package netdevtest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/internal/testenv"
)

// envChild marks the re-executed test process that runs inside the new namespace.
const envChild = "STRICTGATE_NETDEVTEST_CHILD"

// RequireRoot skips the test loudly when not running as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	testenv.RequireRoot(tb, "uses network namespaces, veth and eBPF")
}

// Isolate runs the calling test again in a child process inside a fresh network
// namespace and a private mount namespace. It returns true in that child (the test goes
// on there, with loopback up, IPv4 forwarding on and a private bpffs mounted on
// /sys/fs/bpf, so pins never leak into the machine) and false in the parent, after the
// child has finished and its output and result were reported.
// Usage: `if !netdevtest.Isolate(t) { return }`.
func Isolate(t *testing.T) bool {
	t.Helper()
	RequireRoot(t)
	if os.Getenv(envChild) == t.Name() {
		setupNode(t)
		return true
	}
	args := []string{"-test.run=^" + regexpQuote(t.Name()) + "$", "-test.v", "-test.count=1"}
	if dl, ok := t.Deadline(); ok {
		_ = dl // the parent's timeout covers the child; don't pass a shorter one
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envChild+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("test in its own network namespace failed: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("test in its own network namespace did not report PASS")
	}
	return false
}

func regexpQuote(name string) string {
	// Sub-tests are not supported as targets: only the top-level name is re-run.
	name, _, _ = strings.Cut(name, "/")
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func setupNode(t *testing.T) {
	// Mounts made here must not propagate to the machine.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a private bpffs on /sys/fs/bpf: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatalf("loopback: %v", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatalf("enable forwarding: %v", err)
	}
	// A node has an address and a default route (kube-apiserver needs one to pick its
	// advertise address). The "uplink" is one end of a veth pair whose other end has no
	// address: what is sent there goes nowhere.
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink1"}
	if err := netlink.LinkAdd(up); err != nil {
		t.Fatalf("add uplink: %v", err)
	}
	if peer, err := netlink.LinkByName("uplink1"); err == nil {
		_ = netlink.LinkSetUp(peer)
	}
	if err := netlink.AddrAdd(up, &netlink.Addr{IPNet: &net.IPNet{IP: NodeIP.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatalf("node address: %v", err)
	}
	if err := netlink.LinkSetUp(up); err != nil {
		t.Fatalf("uplink up: %v", err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.IPv4(192, 0, 2, 254)}); err != nil {
		t.Fatalf("default route: %v", err)
	}
}

// NodeIP is the isolated node's address on its (dummy) uplink.
var NodeIP = netip.MustParseAddr("192.0.2.1")

// GatewayIP is the address every pod uses as its default gateway; the node owns it on
// each host-side veth (as ptp does), so it is also one of the node's host addresses.
var GatewayIP = netip.MustParseAddr("169.254.1.1")

// Pod is a network namespace wired like a pod.
type Pod struct {
	Name string
	IP   netip.Addr
	NS   netns.NsHandle
	// Host is the host-side veth.
	Host      string
	HostIndex int
	// MAC of the pod's eth0, for CNI results.
	MAC string
}

// NetnsPath is a path other processes can open the pod's namespace by.
func (p *Pod) NetnsPath() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(p.NS)) }

// NewPodNetns creates an empty network namespace with loopback up (what a container
// runtime hands to CNI ADD). The namespace is closed when the test ends.
func NewPodNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if serr := netns.Set(orig); serr != nil {
		panic(fmt.Sprintf("cannot return to the original netns: %v", serr))
	}
	if err != nil {
		t.Fatalf("pod loopback: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// Plumb does what a ptp-like main CNI plugin does: a veth pair with eth0 in ns, ip/32 on
// it, a default route via GatewayIP, and on the host side GatewayIP/32 plus a host route
// to ip. It returns the pod; the host veth is deleted when the test ends.
func Plumb(t testing.TB, name string, ns netns.NsHandle, ip netip.Addr) *Pod {
	t.Helper()
	host := "sg" + name
	if len(host) > 15 {
		host = host[:15]
	}
	la := netlink.NewLinkAttrs()
	la.Name = host
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", host, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(host); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	hl, err := netlink.LinkByName(host)
	if err != nil {
		t.Fatalf("veth %s: %v", host, err)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: GatewayIP.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(hl, gw); err != nil {
		t.Fatalf("gateway address on %s: %v", host, err)
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		t.Fatalf("up %s: %v", host, err)
	}
	_ = os.WriteFile(filepath.Join("/proc/sys/net/ipv4/conf", host, "rp_filter"), []byte("0"), 0o644)
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatalf("host route to %s: %v", ip, err)
	}
	p := &Pod{Name: name, IP: ip, NS: ns, Host: host, HostIndex: hl.Attrs().Index}
	err = p.Do(func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		p.MAC = eth.Attrs().HardwareAddr.String()
		if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return fmt.Errorf("address: %w", err)
		}
		if err := netlink.LinkSetUp(eth); err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: &net.IPNet{IP: GatewayIP.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("gateway route: %w", err)
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: GatewayIP.AsSlice()})
	})
	if err != nil {
		t.Fatalf("plumb pod %s: %v", name, err)
	}
	return p
}

// AddPod creates a netns pod with address ip (NewPodNetns + Plumb).
func AddPod(t testing.TB, name string, ip netip.Addr) *Pod {
	t.Helper()
	return Plumb(t, name, NewPodNetns(t), ip)
}

// Do runs fn on a thread switched into the pod's namespace. Sockets created inside keep
// belonging to the pod after fn returns.
func (p *Pod) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is dropped (not unlocked) if it cannot be switched back, so no
		// other goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(p.NS); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return from pod netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenTCP opens an echoing TCP listener inside the pod on port.
func (p *Pod) ListenTCP(t testing.TB, port int) net.Listener {
	t.Helper()
	var l net.Listener
	if err := p.Do(func() (err error) {
		l, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", p.IP, port))
		return err
	}); err != nil {
		t.Fatalf("listen tcp in %s: %v", p.Name, err)
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
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				_, _ = c.Write(buf[:n])
			}()
		}
	}()
	return l
}

// ListenUDP opens an echoing UDP socket inside the pod on port.
func (p *Pod) ListenUDP(t testing.TB, port int) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	if err := p.Do(func() (err error) {
		c, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", p.IP, port))
		return err
	}); err != nil {
		t.Fatalf("listen udp in %s: %v", p.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, a, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], a)
		}
	}()
	return c
}

// ProbeTCP connects from the pod to dst:port, sends a line and waits for the echo; it
// returns nil only if the round trip completed within timeout.
func (p *Pod) ProbeTCP(dst netip.Addr, port int, timeout time.Duration) error {
	var c net.Conn
	if err := p.Do(func() (err error) {
		d := net.Dialer{Timeout: timeout}
		c, err = d.Dial("tcp4", net.JoinHostPort(dst.String(), fmt.Sprint(port)))
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	return echo(c, timeout)
}

// ProbeUDP sends a datagram from the pod to dst:port and waits for the echo.
func (p *Pod) ProbeUDP(dst netip.Addr, port int, timeout time.Duration) error {
	var c net.Conn
	if err := p.Do(func() (err error) {
		c, err = net.Dial("udp4", net.JoinHostPort(dst.String(), fmt.Sprint(port)))
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	return echo(c, timeout)
}

func echo(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("strictgate-probe")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, msg) {
		return fmt.Errorf("echo mismatch: %q", buf)
	}
	return nil
}
