package datapath

import (
	"testing"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
)

func TestPrivilegedSmoke(t *testing.T) {
	d := openEphemeral(t)
	if _, err := d.Register(100, rules.StateUnprogrammedDeny, rules.StateUnprogrammedAllow); err != nil {
		t.Fatal(err)
	}
	r, err := d.RunPacket(100, rules.Egress, packet.TCP(mustAddrPort("10.0.0.1:1000"), mustAddrPort("10.0.0.2:80"), 0))
	t.Logf("%+v %v", r, err)
	r, err = d.RunPacket(100, rules.Ingress, packet.TCP(mustAddrPort("10.0.0.2:80"), mustAddrPort("10.0.0.1:1000"), packet.SYN|packet.ACK))
	t.Logf("%+v %v", r, err)
}
