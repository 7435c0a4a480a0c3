package cluster

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/internal/testenv"
)

func TestCNIConflist(t *testing.T) {
	tests := []struct {
		name    string
		opts    CNIOptions
		wantErr bool
		types   []string
		ranges  int
	}{
		{name: "ipv4", opts: CNIOptions{Name: "n", PodCIDR: "10.244.0.0/24", DataDir: "/x"}, types: []string{"ptp"}, ranges: 1},
		{name: "dual stack", opts: CNIOptions{Name: "n", PodCIDR: "10.244.0.0/24", PodCIDRv6: "fd00:10:244::/64"}, types: []string{"ptp"}, ranges: 2},
		{name: "chained", opts: CNIOptions{Name: "n", PodCIDR: "10.244.0.0/24", Chained: []map[string]any{{"type": "strictgate", "mode": "strict"}}}, types: []string{"ptp", "strictgate"}, ranges: 1},
		{name: "chained without type", opts: CNIOptions{Name: "n", PodCIDR: "10.244.0.0/24", Chained: []map[string]any{{"mode": "strict"}}}, wantErr: true},
		{name: "bad cidr", opts: CNIOptions{Name: "n", PodCIDR: "10.244.0.0/33"}, wantErr: true},
		{name: "no name", opts: CNIOptions{PodCIDR: "10.244.0.0/24"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := CNIConflist(tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			var got struct {
				CNIVersion string `json:"cniVersion"`
				Plugins    []struct {
					Type   string `json:"type"`
					IPMasq *bool  `json:"ipMasq"`
					IPAM   struct {
						Type   string  `json:"type"`
						Ranges [][]any `json:"ranges"`
					} `json:"ipam"`
				} `json:"plugins"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, p := range got.Plugins {
				types = append(types, p.Type)
			}
			if strings.Join(types, ",") != strings.Join(tt.types, ",") {
				t.Fatalf("plugins %v, want %v", types, tt.types)
			}
			ptp := got.Plugins[0]
			if ptp.IPMasq == nil || *ptp.IPMasq || ptp.IPAM.Type != "host-local" || len(ptp.IPAM.Ranges) != tt.ranges {
				t.Fatalf("ptp = %+v: want ipMasq false, host-local with %d ranges", ptp, tt.ranges)
			}
		})
	}
}

func TestDefaultConfigNodeIPIsNotLoopback(t *testing.T) {
	cfg, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeIP.IsLoopback() || cfg.NodeIP.To4() == nil {
		t.Fatalf("node IP %s: want a non-loopback IPv4 address", cfg.NodeIP)
	}
	if len(cfg.ExternalInterfaces) == 0 {
		t.Fatal("no external interface found to shield")
	}
	if _, err := cfg.binaries(); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedShieldRulesetParses checks the nftables ruleset with `nft -c` (no
// change to the kernel).
func TestPrivilegedShieldRulesetParses(t *testing.T) {
	testenv.RequireRoot(t, "runs nft -c")
	cfg, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), "nft", "-c", "-f", "-")
	cmd.Stdin = strings.NewReader(cfg.nftRuleset())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -c: %v\n%s\n%s", err, out, cfg.nftRuleset())
	}
}
