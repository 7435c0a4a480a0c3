package packet

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"testing"
)

func TestFrames(t *testing.T) {
	v4a, v4b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	v6a, v6b := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	for _, c := range []struct {
		name      string
		p         Packet
		etherType uint16
		l4Off     int
		l4Len     int
	}{
		{"tcp4", Packet{Src: v4a, Dst: v4b, Protocol: ProtoTCP, SrcPort: 1, DstPort: 80}, EtherTypeIPv4, 34, 20},
		{"udp4", Packet{Src: v4a, Dst: v4b, Protocol: ProtoUDP, SrcPort: 1, DstPort: 53, Payload: []byte("x")}, EtherTypeIPv4, 34, 9},
		{"sctp4", Packet{Src: v4a, Dst: v4b, Protocol: ProtoSCTP, SrcPort: 1, DstPort: 9}, EtherTypeIPv4, 34, 12},
		{"icmp4", Packet{Src: v4a, Dst: v4b, Protocol: ProtoICMP}, EtherTypeIPv4, 34, 8},
		{"tcp6", Packet{Src: v6a, Dst: v6b, Protocol: ProtoTCP, SrcPort: 1, DstPort: 80}, EtherTypeIPv6, 54, 20},
		{"udp6", Packet{Src: v6a, Dst: v6b, Protocol: ProtoUDP, SrcPort: 1, DstPort: 53}, EtherTypeIPv6, 54, 8},
		{"icmp6", Packet{Src: v6a, Dst: v6b, Protocol: ProtoICMPv6}, EtherTypeIPv6, 54, 8},
		{"hop-by-hop", Packet{Src: v6a, Dst: v6b, Protocol: ProtoUDP, HopByHop: true}, EtherTypeIPv6, 62, 8},
	} {
		b, err := c.p.Frame()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := binary.BigEndian.Uint16(b[12:]); got != c.etherType {
			t.Errorf("%s: ethertype %#x", c.name, got)
		}
		if len(b) != c.l4Off+c.l4Len {
			t.Errorf("%s: %d bytes, want %d", c.name, len(b), c.l4Off+c.l4Len)
		}
		l4 := b[c.l4Off:]
		var pseudo uint32
		if c.etherType == EtherTypeIPv4 {
			if checksum(b[14:34], 0) != 0 {
				t.Errorf("%s: bad IPv4 header checksum", c.name)
			}
			if binary.BigEndian.Uint16(b[16:]) != uint16(20+c.l4Len) {
				t.Errorf("%s: bad IPv4 total length", c.name)
			}
			pseudo = pseudo4(c.p.Src.As4(), c.p.Dst.As4(), c.p.Protocol, len(l4))
		} else {
			if binary.BigEndian.Uint16(b[18:]) != uint16(len(b)-54) {
				t.Errorf("%s: bad IPv6 payload length", c.name)
			}
			pseudo = pseudo6(c.p.Src.As16(), c.p.Dst.As16(), c.p.Protocol, len(l4))
		}
		switch c.p.Protocol {
		case ProtoTCP, ProtoUDP, ProtoICMPv6:
			if checksum(l4, pseudo) != 0 {
				t.Errorf("%s: bad %d checksum", c.name, c.p.Protocol)
			}
			if c.p.Protocol != ProtoICMPv6 && binary.BigEndian.Uint16(l4[2:]) != c.p.DstPort {
				t.Errorf("%s: destination port", c.name)
			}
		case ProtoICMP:
			if checksum(l4, 0) != 0 || l4[0] != 8 {
				t.Errorf("%s: bad ICMP echo", c.name)
			}
		case ProtoSCTP:
			sum := binary.LittleEndian.Uint32(l4[8:])
			binary.LittleEndian.PutUint32(l4[8:], 0)
			if crc32.Checksum(l4, crc32.MakeTable(crc32.Castagnoli)) != sum {
				t.Errorf("%s: bad SCTP CRC", c.name)
			}
		}
	}
	if _, err := (Packet{Src: v4a, Dst: v6b}).Frame(); err == nil {
		t.Error("mixed families: no error")
	}
	if b := ICMPEcho(v4a, v4b, true); b[34] != 0 || checksum(b[34:], 0) != 0 {
		t.Error("IPv4 echo reply is not type 0 with a valid checksum")
	}
	frag := Packet{Src: v6a, Dst: v6b, Protocol: ProtoTCP, FragOffset: 3, FragID: 9}.MustFrame()
	if frag[20] != 44 || binary.BigEndian.Uint16(frag[56:])>>3 != 3 {
		t.Error("IPv6 fragment header missing or wrong")
	}
}

func TestICMPv6ControlHopLimit(t *testing.T) {
	ll, group := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::16")
	for _, c := range []struct {
		name     string
		frame    []byte
		hopLimit byte
		next     byte // IPv6 next header
		icmpType byte
		icmpOff  int
	}{
		{"default hop limit", Packet{Src: ll, Dst: group, Protocol: ProtoUDP}.MustFrame(), 64, ProtoUDP, 0, 0},
		{"NS at 255", NeighborSolicitation(netip.MustParseAddr("::"), netip.MustParseAddr("ff02::1:ff00:1"), netip.MustParseAddr("fd00::1"), 255), 255, ProtoICMPv6, NeighborSolicit, 54},
		{"RA at 255", ICMPv6Control(RouterAdvertisement, ll, group, 255), 255, ProtoICMPv6, RouterAdvertisement, 54},
		{"MLDv2 report at 1 behind hop-by-hop", ICMPv6Control(MLDv2Report, ll, group, 1), 1, 0, MLDv2Report, 62},
	} {
		if got := c.frame[14+7]; got != c.hopLimit {
			t.Errorf("%s: hop limit %d, want %d", c.name, got, c.hopLimit)
		}
		if got := c.frame[14+6]; got != c.next {
			t.Errorf("%s: next header %d, want %d", c.name, got, c.next)
		}
		if c.icmpOff != 0 && c.frame[c.icmpOff] != c.icmpType {
			t.Errorf("%s: ICMPv6 type %d, want %d", c.name, c.frame[c.icmpOff], c.icmpType)
		}
	}
}
