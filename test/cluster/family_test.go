package cluster

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/internal/testenv"
)

func dualStackConfig(t *testing.T, v6Primary bool) Config {
	t.Helper()
	parse := func(s string) *net.IPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return Config{
		Dir: t.TempDir(), NodeName: "n",
		NodeIP: net.ParseIP("192.0.2.2").To4(), NodeIPv6: net.ParseIP("2001:db8::2"),
		PodCIDR: parse("10.244.0.0/24"), ServiceCIDR: parse("10.96.0.0/16"),
		PodCIDRv6: parse("fd00:10:244::/64"), ServiceCIDRv6: parse("fd00:10:96::/112"),
		ExternalInterfaces: []string{"eth0"}, APIServerPort: 6443, IPv6Primary: v6Primary,
	}
}

func TestPrimaryFamily(t *testing.T) {
	for _, tt := range []struct {
		v6Primary                          bool
		family, services, pods, nodeIPs    string
		advertise, kubeletAddress, podRule string
	}{
		{false, "ipv4", "10.96.0.0/16,fd00:10:96::/112", "10.244.0.0/24,fd00:10:244::/64", "192.0.2.2,2001:db8::2",
			"--advertise-address=192.0.2.2", "address: 192.0.2.2\n", `meta nfproto ipv6 tcp dport @ports counter drop`},
		{true, "ipv6", "fd00:10:96::/112,10.96.0.0/16", "fd00:10:244::/64,10.244.0.0/24", "2001:db8::2,192.0.2.2",
			"--advertise-address=2001:db8::2", "address: 2001:db8::2\n", `ip6 saddr != fd00:10:244::/64 tcp dport @ports counter drop`},
	} {
		c := dualStackConfig(t, tt.v6Primary)
		if got := c.PrimaryFamily(); got != tt.family {
			t.Errorf("v6Primary=%v: family %s, want %s", tt.v6Primary, got, tt.family)
		}
		if c.serviceCIDRs() != tt.services || c.podCIDRs() != tt.pods || c.nodeIPs() != tt.nodeIPs {
			t.Errorf("v6Primary=%v: service %s, pod %s, node %s: want the primary family first (%s, %s, %s)",
				tt.v6Primary, c.serviceCIDRs(), c.podCIDRs(), c.nodeIPs(), tt.services, tt.pods, tt.nodeIPs)
		}
		bins := map[string]binary{}
		if args := strings.Join(c.components(bins)["kube-apiserver"].args, " "); !strings.Contains(args, tt.advertise) {
			t.Errorf("v6Primary=%v: API server args lack %s (its family must be the primary service CIDR's)", tt.v6Primary, tt.advertise)
		}
		if !strings.Contains(c.kubeletConfig(), tt.kubeletAddress) {
			t.Errorf("v6Primary=%v: kubelet config lacks %q (the API server reaches it at the node's first address)", tt.v6Primary, tt.kubeletAddress)
		}
		if rs := c.nftRuleset(); !strings.Contains(rs, tt.podRule) {
			t.Errorf("v6Primary=%v: shield lacks %q:\n%s", tt.v6Primary, tt.podRule, rs)
		}
		svc6 := false
		for _, id := range c.identities() {
			if id.file != "apiserver" {
				continue
			}
			for _, ip := range id.ips {
				svc6 = svc6 || ip.Equal(net.ParseIP("fd00:10:96::1"))
			}
		}
		if svc6 != tt.v6Primary {
			t.Errorf("v6Primary=%v: API server certificate names the IPv6 kubernetes Service IP: %v", tt.v6Primary, svc6)
		}
	}
	// IPv6 primary needs IPv6 at all.
	c := dualStackConfig(t, true)
	c.NodeIPv6 = nil
	if c.PrimaryFamily() != "ipv4" {
		t.Error("a single-stack IPv4 cluster reports IPv6 primary")
	}
}

// TestStatusReportsTheOtherFamily: a cluster started with the other primary family is
// unhealthy for this configuration, so Up restarts it instead of reusing it.
func TestStatusReportsTheOtherFamily(t *testing.T) {
	c := dualStackConfig(t, true)
	if got := c.runningPrimaryFamily(); got != "ipv4" {
		t.Fatalf("no record: running family %s, want ipv4 (clusters started before the record were IPv4-primary)", got)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "primary-family"), []byte("ipv4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := c.status(context.Background(), map[string]binary{})
	last := s[len(s)-1]
	if last.Name != "primary-family" || last.Health == "ok" || healthy(s) {
		t.Fatalf("status %+v: want an unhealthy primary-family entry", s)
	}
	c.IPv6Primary = false
	for _, st := range c.status(context.Background(), map[string]binary{}) {
		if st.Name == "primary-family" {
			t.Fatalf("status reports a family mismatch for the family the cluster runs with: %+v", st)
		}
	}
}

func TestDefaultConfigPrimaryFamily(t *testing.T) {
	t.Setenv("STRICTGATE_CLUSTER_PRIMARY", "")
	c, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.IPv6Primary || c.PrimaryFamily() != "ipv4" {
		t.Fatalf("default config: IPv6Primary %v: the default stays IPv4 primary", c.IPv6Primary)
	}
	t.Setenv("STRICTGATE_CLUSTER_PRIMARY", "ipv5")
	if _, err := DefaultConfig(); err == nil {
		t.Error("STRICTGATE_CLUSTER_PRIMARY=ipv5 accepted")
	}
	t.Setenv("STRICTGATE_CLUSTER_PRIMARY", "ipv6")
	c6, err := DefaultConfig()
	if c.DualStack() {
		if err != nil || c6.PrimaryFamily() != "ipv6" {
			t.Errorf("STRICTGATE_CLUSTER_PRIMARY=ipv6 on a dual-stack machine: %v, family %s", err, c6.PrimaryFamily())
		}
	} else if err == nil {
		t.Error("STRICTGATE_CLUSTER_PRIMARY=ipv6 accepted on a machine without IPv6")
	}
}

// TestPrivilegedShieldRulesetParsesIPv6Primary checks the IPv6-primary shield with
// `nft -c` (no change to the kernel).
func TestPrivilegedShieldRulesetParsesIPv6Primary(t *testing.T) {
	testenv.RequireRoot(t, "runs nft -c")
	cmd := exec.CommandContext(context.Background(), "nft", "-c", "-f", "-")
	rs := dualStackConfig(t, true).nftRuleset()
	cmd.Stdin = strings.NewReader(rs)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -c: %v\n%s\n%s", err, out, rs)
	}
}
