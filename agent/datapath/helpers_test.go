package datapath

import (
	"net/netip"
	"testing"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/testenv"
)

// requireRoot skips privileged tests loudly when not root.
func requireRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "loads eBPF programs")
}

// openEphemeral opens a private datapath that is removed at the end of the test.
func openEphemeral(t testing.TB) *Datapath {
	t.Helper()
	requireRoot(t)
	d, err := Open(Options{Ephemeral: true})
	if err != nil {
		t.Fatalf("open datapath: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustAddrPort(s string) netip.AddrPort {
	return netip.MustParseAddrPort(s)
}

func tcpRule(first, last uint16, id rules.RuleID) rules.PortRule {
	return rules.PortRule{Protocol: rules.ProtocolTCP, First: first, Last: last, Rule: id}
}
