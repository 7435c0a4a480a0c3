// Package packet builds Ethernet frames (IPv4 or IPv6 with TCP, UDP, SCTP, ICMP or any
// other protocol) to run through the datapath with datapath.RunPacket: for tests, the
// differential test against rules.Lookup and `strictgate verdict --engine=bpf`.
// Checksums are filled in, though the datapath does not check them.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// IP protocol numbers.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// Ethertypes.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
	EtherTypeVLAN = 0x8100
)

// Packet describes one IP packet. Src and Dst must be of the same family (an IPv4-mapped
// IPv6 address makes an IPv6 packet).
type Packet struct {
	Src, Dst netip.Addr
	// Protocol is the IP protocol number (upper-layer header for IPv6).
	Protocol uint8
	// SrcPort and DstPort are used for TCP, UDP and SCTP.
	SrcPort, DstPort uint16
	// TCPFlags for TCP; zero means SYN.
	TCPFlags uint8
	// ICMPType and ICMPCode for ICMP and ICMPv6; both zero means echo request unless
	// ICMPExplicit is set (IPv4 echo reply is type 0 code 0).
	ICMPType, ICMPCode uint8
	ICMPExplicit       bool
	// Quoted is the IP packet an ICMP error quotes (from IP(), without Ethernet).
	Quoted []byte
	// Payload follows the upper-layer header.
	Payload []byte
	// Fragmentation: FragOffset in 8-byte units; IPv6 adds a fragment header when
	// FragOffset or MoreFragments is set.
	FragID        uint32
	FragOffset    uint16
	MoreFragments bool
	// HopByHop adds an empty IPv6 hop-by-hop options header.
	HopByHop bool
	// HopLimit is the IPv6 hop limit; 0 means 64. (IPv4 TTL is always 64.)
	HopLimit uint8
}

var (
	srcMAC = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	dstMAC = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// Ethernet wraps payload in an Ethernet header of the given ethertype.
func Ethernet(etherType uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], etherType)
	return append(b, payload...)
}

// Frame builds the Ethernet frame of p.
func (p Packet) Frame() ([]byte, error) {
	ip, err := p.IP()
	if err != nil {
		return nil, err
	}
	et := uint16(EtherTypeIPv6)
	if p.Src.Is4() {
		et = EtherTypeIPv4
	}
	return Ethernet(et, ip), nil
}

// MustFrame is Frame that panics on error (for tests and literals).
func (p Packet) MustFrame() []byte {
	b, err := p.Frame()
	if err != nil {
		panic(err)
	}
	return b
}

// IP builds the IP packet of p (no Ethernet header).
func (p Packet) IP() ([]byte, error) {
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return nil, errors.New("packet: source and destination addresses are required")
	}
	if p.Src.Is4() != p.Dst.Is4() {
		return nil, fmt.Errorf("packet: %s and %s are of different families", p.Src, p.Dst)
	}
	v4 := p.Src.Is4()
	l4 := p.upper(v4)
	if v4 {
		return p.ipv4(l4), nil
	}
	return p.ipv6(l4), nil
}

// upper builds the upper-layer header and payload, checksum left for later.
func (p Packet) upper(v4 bool) []byte {
	var h []byte
	switch p.Protocol {
	case ProtoTCP:
		h = make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
		binary.BigEndian.PutUint32(h[4:], 1000) // seq
		flags := p.TCPFlags
		if flags == 0 {
			flags = SYN
		}
		if flags&ACK != 0 {
			binary.BigEndian.PutUint32(h[8:], 2000)
		}
		h[12] = 5 << 4
		h[13] = flags
		binary.BigEndian.PutUint16(h[14:], 65535)
	case ProtoUDP:
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(p.Payload)))
	case ProtoSCTP:
		h = make([]byte, 12)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
		binary.BigEndian.PutUint32(h[4:], 0x5347) // verification tag
	case ProtoICMP, ProtoICMPv6:
		h = make([]byte, 8)
		t := p.ICMPType
		if t == 0 && p.ICMPCode == 0 && !p.ICMPExplicit {
			t = 8 // echo request
			if p.Protocol == ProtoICMPv6 {
				t = 128
			}
		}
		h[0], h[1] = t, p.ICMPCode
		if len(p.Quoted) == 0 {
			binary.BigEndian.PutUint16(h[4:], 0x5347) // echo identifier
			binary.BigEndian.PutUint16(h[6:], 1)
		}
		h = append(h, p.Quoted...)
	}
	return append(h, p.Payload...)
}

func (p Packet) ipv4(l4 []byte) []byte {
	h := make([]byte, 20, 20+len(l4))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(h[4:], uint16(p.FragID))
	fo := p.FragOffset & 0x1fff
	if p.MoreFragments {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], fo)
	h[8] = 64
	h[9] = p.Protocol
	src, dst := p.Src.As4(), p.Dst.As4()
	copy(h[12:16], src[:])
	copy(h[16:20], dst[:])
	binary.BigEndian.PutUint16(h[10:], checksum(h, 0))
	if p.FragOffset == 0 {
		p.fillChecksum(l4, pseudo4(src, dst, p.Protocol, len(l4)))
	}
	return append(h, l4...)
}

func (p Packet) ipv6(l4 []byte) []byte {
	var ext []byte
	next := p.Protocol
	if p.FragOffset != 0 || p.MoreFragments {
		f := make([]byte, 8)
		f[0] = next
		fo := p.FragOffset << 3
		if p.MoreFragments {
			fo |= 1
		}
		binary.BigEndian.PutUint16(f[2:], fo)
		binary.BigEndian.PutUint32(f[4:], p.FragID)
		ext = f
		next = 44
	}
	if p.HopByHop {
		hbh := []byte{next, 0, 1, 4, 0, 0, 0, 0} // PadN option fills the 8 bytes
		ext = append(hbh, ext...)
		next = 0
	}
	h := make([]byte, 40, 40+len(ext)+len(l4))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(l4)))
	h[6] = next
	h[7] = 64
	if p.HopLimit != 0 {
		h[7] = p.HopLimit
	}
	src, dst := p.Src.As16(), p.Dst.As16()
	copy(h[8:24], src[:])
	copy(h[24:40], dst[:])
	if p.FragOffset == 0 {
		p.fillChecksum(l4, pseudo6(src, dst, p.Protocol, len(l4)))
	}
	h = append(h, ext...)
	return append(h, l4...)
}

func (p Packet) fillChecksum(l4 []byte, pseudo uint32) {
	switch p.Protocol {
	case ProtoTCP:
		binary.BigEndian.PutUint16(l4[16:], checksum(l4, pseudo))
	case ProtoUDP:
		c := checksum(l4, pseudo)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case ProtoICMP:
		binary.BigEndian.PutUint16(l4[2:], checksum(l4, 0))
	case ProtoICMPv6:
		binary.BigEndian.PutUint16(l4[2:], checksum(l4, pseudo))
	case ProtoSCTP:
		binary.LittleEndian.PutUint32(l4[8:], crc32.Checksum(l4, crc32.MakeTable(crc32.Castagnoli)))
	}
}

func pseudo4(src, dst [4]byte, proto uint8, n int) uint32 {
	var s uint32
	s += uint32(binary.BigEndian.Uint16(src[0:])) + uint32(binary.BigEndian.Uint16(src[2:]))
	s += uint32(binary.BigEndian.Uint16(dst[0:])) + uint32(binary.BigEndian.Uint16(dst[2:]))
	return s + uint32(proto) + uint32(n)
}

func pseudo6(src, dst [16]byte, proto uint8, n int) uint32 {
	var s uint32
	for i := 0; i < 16; i += 2 {
		s += uint32(binary.BigEndian.Uint16(src[i:])) + uint32(binary.BigEndian.Uint16(dst[i:]))
	}
	return s + uint32(n>>16) + uint32(n&0xffff) + uint32(proto)
}

// checksum is the Internet checksum of b, starting from a partial sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Flow builds the first packet of a flow of protocol proto from src to dst: a TCP SYN,
// a UDP or SCTP packet, an ICMP/ICMPv6 echo request, or a bare header of any other
// protocol. Ports are ignored for protocols without them. It panics if src and dst are
// of different families.
func Flow(proto uint8, src netip.Addr, srcPort uint16, dst netip.Addr, dstPort uint16) []byte {
	return Packet{Src: src, Dst: dst, Protocol: proto, SrcPort: srcPort, DstPort: dstPort}.MustFrame()
}

// TCP builds a TCP segment with the given flags (0 = SYN).
func TCP(src, dst netip.AddrPort, flags uint8) []byte {
	return Packet{Src: src.Addr(), Dst: dst.Addr(), Protocol: ProtoTCP, SrcPort: src.Port(), DstPort: dst.Port(), TCPFlags: flags}.MustFrame()
}

// UDP builds a UDP datagram.
func UDP(src, dst netip.AddrPort) []byte {
	return Packet{Src: src.Addr(), Dst: dst.Addr(), Protocol: ProtoUDP, SrcPort: src.Port(), DstPort: dst.Port()}.MustFrame()
}

// SCTP builds an SCTP packet (common header only).
func SCTP(src, dst netip.AddrPort) []byte {
	return Packet{Src: src.Addr(), Dst: dst.Addr(), Protocol: ProtoSCTP, SrcPort: src.Port(), DstPort: dst.Port()}.MustFrame()
}

// ICMPEcho builds an echo request (reply: an echo reply), ICMPv6 for IPv6.
func ICMPEcho(src, dst netip.Addr, reply bool) []byte {
	p := Packet{Src: src, Dst: dst, Protocol: ProtoICMP, ICMPType: 8, ICMPExplicit: true}
	if reply {
		p.ICMPType = 0
	}
	if !src.Is4() {
		p.Protocol, p.ICMPType = ProtoICMPv6, 128
		if reply {
			p.ICMPType = 129
		}
	}
	return p.MustFrame()
}

// ICMPUnreachable builds an ICMP (IPv4: type 3 code 3) or ICMPv6 (type 1 code 4)
// port-unreachable error from src to dst quoting the IP packet quoted (from IP()).
func ICMPUnreachable(src, dst netip.Addr, quoted []byte) []byte {
	p := Packet{Src: src, Dst: dst, Protocol: ProtoICMP, ICMPType: 3, ICMPCode: 3, Quoted: quoted}
	if !src.Is4() {
		p.Protocol, p.ICMPType, p.ICMPCode = ProtoICMPv6, 1, 4
	}
	return p.MustFrame()
}

// ARP builds an ARP request frame.
func ARP() []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:14], srcMAC)
	return Ethernet(EtherTypeARP, b)
}

// NeighborSolicitation builds an ICMPv6 neighbour solicitation from src to dst (the
// target itself, or its solicited-node multicast group) for target. RFC 4861 sends it
// with hop limit 255; other values test how the datapath treats routed look-alikes.
func NeighborSolicitation(src, dst, target netip.Addr, hopLimit uint8) []byte {
	t := target.As16()
	p := Packet{Src: src, Dst: dst, Protocol: ProtoICMPv6, ICMPType: 135, ICMPExplicit: true, Payload: t[:], HopLimit: hopLimit}
	return p.MustFrame()
}

// ICMPv6 ND and MLD message types.
const (
	MLDQuery              = 130
	MLDReport             = 131
	MLDDone               = 132
	RouterSolicitation    = 133
	RouterAdvertisement   = 134
	NeighborSolicit       = 135
	NeighborAdvertisement = 136
	Redirect              = 137
	MLDv2Report           = 143
)

// ICMPv6Control builds an ICMPv6 message of type icmpType (ND or MLD) from src to dst
// with the given hop limit and a 16-byte zero body. MLD types get a hop-by-hop header,
// where real MLD carries its router-alert option.
func ICMPv6Control(icmpType uint8, src, dst netip.Addr, hopLimit uint8) []byte {
	p := Packet{Src: src, Dst: dst, Protocol: ProtoICMPv6, ICMPType: icmpType, ICMPExplicit: true,
		Payload: make([]byte, 16), HopLimit: hopLimit}
	if icmpType >= MLDQuery && icmpType <= MLDDone || icmpType == MLDv2Report {
		p.HopByHop = true
	}
	return p.MustFrame()
}
