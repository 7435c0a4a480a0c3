package contract

import "testing"

func TestPins(t *testing.T) {
	for _, tc := range []struct {
		root                              string
		wantRoot, maps, cfg, links, progs string
	}{
		{"", "/sys/fs/bpf/strictgate", "/sys/fs/bpf/strictgate/maps", "/sys/fs/bpf/strictgate/maps/sg_cfg", "/sys/fs/bpf/strictgate/links", "/sys/fs/bpf/strictgate/progs"},
		{"/sys/fs/bpf/test/", "/sys/fs/bpf/test/", "/sys/fs/bpf/test/maps", "/sys/fs/bpf/test/maps/sg_cfg", "/sys/fs/bpf/test/links", "/sys/fs/bpf/test/progs"},
	} {
		p := PinsAt(tc.root)
		for _, c := range []struct{ got, want string }{
			{p.Root(), tc.wantRoot}, {p.Maps(), tc.maps}, {p.Map("sg_cfg"), tc.cfg}, {p.Links(), tc.links}, {p.Programs(), tc.progs},
		} {
			if c.got != c.want {
				t.Errorf("PinsAt(%q): got %q, want %q", tc.root, c.got, c.want)
			}
		}
	}
}

func TestNames(t *testing.T) {
	// These strings are contracts with users, the chart and the upstream tooling.
	for _, tc := range []struct{ got, want string }{
		{ConditionType, "strictgate.dev/policy-programmed"},
		{DefaultDenyPolicy, "strictgate-default-deny"},
		{AllowDNSPolicy, "strictgate-allow-dns"},
		{ManagedByLabel, "app.kubernetes.io/managed-by"},
		{ManagedBy, "strictgate"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if g := GeneratedPolicies(); len(g) != 2 || g[0] != DefaultDenyPolicy || g[1] != AllowDNSPolicy {
		t.Errorf("GeneratedPolicies() = %v", g)
	}
}
