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
	"time"

	"github.com/strictgate/strictgate/internal/testenv"
	"github.com/strictgate/strictgate/test/images"
)

// TestPrivilegedShieldRulesetInIsolation loads the cluster's nftables ruleset into a
// router namespace of its own, between a "pod" namespace and an "outside" namespace
// behind the router's external interface, and checks every rule with real packets
// that never leave these namespaces: pods cannot reach the outside, the outside cannot
// reach cluster ports, and nothing for the pod or service CIDR goes out, while the
// same paths work before the ruleset is loaded and ordinary ports stay open.
func TestPrivilegedShieldRulesetInIsolation(t *testing.T) {
	testenv.RequireRoot(t, "uses network namespaces and nftables")
	ctx := context.Background()
	probe := filepath.Join(t.TempDir(), "probe")
	if err := images.BuildGo(ctx, "github.com/strictgate/strictgate/test/images/probe", probe); err != nil {
		t.Fatal(err)
	}
	id := rand.IntN(1 << 16)
	router, pod, outside := fmt.Sprintf("sgtest-rt-%04x", id), fmt.Sprintf("sgtest-pod-%04x", id), fmt.Sprintf("sgtest-out-%04x", id)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{router, pod, outside} {
		sh("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh("ip", "-n", ns, "link", "set", "lo", "up")
	}
	// Addresses live only inside these namespaces.
	sh("ip", "-n", router, "link", "add", "ext0", "type", "veth", "peer", "name", "e0", "netns", outside)
	sh("ip", "-n", router, "link", "add", "pod0", "type", "veth", "peer", "name", "p0", "netns", pod)
	sh("ip", "-n", router, "addr", "add", "198.51.100.1/24", "dev", "ext0")
	sh("ip", "-n", router, "addr", "add", "10.244.0.1/24", "dev", "pod0")
	sh("ip", "-n", outside, "addr", "add", "198.51.100.2/24", "dev", "e0")
	sh("ip", "-n", outside, "addr", "add", "10.96.0.5/32", "dev", "lo")
	sh("ip", "-n", pod, "addr", "add", "10.244.0.77/24", "dev", "p0")
	// IPv6 the same way (nodad: usable at once, no duplicate detection wait).
	sh("ip", "-n", router, "addr", "add", "fd00:198:51::1/64", "dev", "ext0", "nodad")
	sh("ip", "-n", router, "addr", "add", "fd00:10:244::1/64", "dev", "pod0", "nodad")
	sh("ip", "-n", outside, "addr", "add", "fd00:198:51::2/64", "dev", "e0", "nodad")
	sh("ip", "-n", outside, "addr", "add", "fd00:10:96::5/128", "dev", "lo")
	sh("ip", "-n", pod, "addr", "add", "fd00:10:244::77/64", "dev", "p0", "nodad")
	for _, l := range [][]string{{router, "ext0"}, {router, "pod0"}, {outside, "e0"}, {pod, "p0"}} {
		sh("ip", "-n", l[0], "link", "set", l[1], "up")
	}
	sh("ip", "-n", pod, "route", "add", "default", "via", "10.244.0.1")
	sh("ip", "-n", outside, "route", "add", "default", "via", "198.51.100.1")
	sh("ip", "-n", pod, "-6", "route", "add", "default", "via", "fd00:10:244::1")
	sh("ip", "-n", outside, "-6", "route", "add", "default", "via", "fd00:198:51::1")
	// Wrong on purpose: the service CIDRs routed out of the external interface.
	sh("ip", "-n", router, "route", "add", "10.96.0.0/16", "via", "198.51.100.2")
	sh("ip", "-n", router, "-6", "route", "add", "fd00:10:96::/112", "via", "fd00:198:51::2")
	sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

	serve := func(ns string, ports string) {
		cmd := exec.Command("ip", "netns", "exec", ns, probe, "serve", "--tcp", ports, "--udp", "", "--http", "")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	serve(outside, "7000")
	serve(router, "6443,10250,7001")
	connect := func(ns, target string) error {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, probe, "connect", "--timeout", "700ms", target).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	tests := []struct {
		name, from, target string
		shielded           bool // blocked once the ruleset is in
	}{
		{"pod to outside is not forwarded", pod, "198.51.100.2:7000", true},
		{"outside to api server port", outside, "198.51.100.1:6443", true},
		{"outside to kubelet port", outside, "198.51.100.1:10250", true},
		{"service CIDR never leaves", router, "10.96.0.5:7000", true},
		{"outside to an ordinary port", outside, "198.51.100.1:7001", false},
		{"pod to api server port", pod, "10.244.0.1:6443", false},
		{"ipv6 pod to outside is not forwarded", pod, "[fd00:198:51::2]:7000", true},
		{"ipv6 outside to api server port", outside, "[fd00:198:51::1]:6443", true},
		{"ipv6 service CIDR never leaves", router, "[fd00:10:96::5]:7000", true},
		{"ipv6 outside to an ordinary port", outside, "[fd00:198:51::1]:7001", false},
	}
	waitListening := func() {
		deadline := time.Now().Add(10 * time.Second)
		// IPv6 needs a moment for neighbour discovery on the fresh links.
		for connect(outside, "198.51.100.1:7001") != nil || connect(router, "198.51.100.2:7000") != nil ||
			connect(pod, "[fd00:198:51::2]:7000") != nil {
			if time.Now().After(deadline) {
				t.Fatal("probe servers in the test namespaces did not come up")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitListening()
	for _, tt := range tests {
		if err := connect(tt.from, tt.target); err != nil {
			t.Fatalf("before the ruleset, %s (%s) must work: %v", tt.name, tt.target, err)
		}
	}
	_, podNet, _ := net.ParseCIDR("10.244.0.0/24")
	_, svcNet, _ := net.ParseCIDR("10.96.0.0/16")
	_, podNet6, _ := net.ParseCIDR("fd00:10:244::/64")
	_, svcNet6, _ := net.ParseCIDR("fd00:10:96::/112")
	cfg := Config{PodCIDR: podNet, ServiceCIDR: svcNet, PodCIDRv6: podNet6, ServiceCIDRv6: svcNet6, ExternalInterfaces: []string{"ext0"}}
	load := exec.CommandContext(ctx, "ip", "netns", "exec", router, "nft", "-f", "-")
	load.Stdin = strings.NewReader(cfg.nftRuleset())
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load ruleset: %v\n%s", err, out)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := connect(tt.from, tt.target)
			if tt.shielded && err == nil {
				t.Fatalf("%s reachable from %s with the shield in place", tt.target, tt.from)
			}
			if !tt.shielded && err != nil {
				t.Fatalf("%s from %s must stay open: %v", tt.target, tt.from, err)
			}
		})
	}
}
