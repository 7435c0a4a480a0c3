package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/test/images"
)

// TestPrivilegedShieldDropsOutsideConnections plays a machine outside the node: a
// network namespace of its own behind a veth, routed to the node. It reaches an
// ordinary port on the node (so the path works) but none of the cluster's ports.
func TestPrivilegedShieldDropsOutsideConnections(t *testing.T) {
	cl := Ensure(t)
	ctx := context.Background()
	probe := filepath.Join(t.TempDir(), "probe")
	if err := images.BuildGo(ctx, "github.com/strictgate/strictgate/test/images/probe", probe); err != nil {
		t.Fatal(err)
	}
	id := rand.IntN(1 << 16)
	ns, host, peer := fmt.Sprintf("sgtest-outside-%04x", id), fmt.Sprintf("sgt-h%04x", id), fmt.Sprintf("sgt-p%04x", id)
	// 169.254.0.0/16 is link-local: never routed off a link, so a mistake stays here.
	hostIP, peerIP := fmt.Sprintf("169.254.%d.1", 100+id%100), fmt.Sprintf("169.254.%d.2", 100+id%100)
	mustRun := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	mustRun("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	mustRun("ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	mustRun("ip", "addr", "add", hostIP+"/30", "dev", host)
	mustRun("ip", "link", "set", host, "up")
	mustRun("ip", "-n", ns, "addr", "add", peerIP+"/30", "dev", peer)
	mustRun("ip", "-n", ns, "link", "set", peer, "up")
	mustRun("ip", "-n", ns, "link", "set", "lo", "up")
	mustRun("ip", "-n", ns, "route", "add", cl.NodeIP.String()+"/32", "via", hostIP)

	// Control listeners: an ordinary port on the veth address and on the node IP.
	var controls []string
	for _, ip := range []string{hostIP, cl.NodeIP.String()} {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("control ok\n"))
				c.Close()
			}
		}()
		controls = append(controls, l.Addr().String())
	}
	connect := func(target string) error {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, probe, "connect", "--timeout", "1s", target).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	for _, c := range controls {
		if err := connect(c); err != nil {
			t.Fatalf("control %s from outside: %v (the test's own path is broken)", c, err)
		}
	}
	node := cl.NodeIP.String()
	tests := []struct{ name, target string }{
		{"api server on the veth address", hostIP + ":6443"},
		{"api server on the node IP", node + ":6443"},
		{"kubelet", node + ":10250"},
		{"etcd", "127.0.0.1:2379"}, // loopback in the other namespace: never the node's
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := connect(tt.target); err == nil {
				t.Fatalf("%s reachable from outside the node", tt.target)
			}
		})
	}
}
