package main

// probe spoof sends hand-built packets with a source address that is not the pod's
// (raw socket; containers have CAP_NET_RAW by default), for the spoofing suite:
//
//	probe spoof --src 10.244.0.9 [--sport 8081] [--count 50] [--interval 10ms] [--tcp-ack] [--vary-ports] DST:PORT
//	    probe: spoof sent 50 udp 10.244.0.9:8081 -> 10.244.0.7:8081 at T

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

func spoofCmd(args []string) error {
	fs := flag.NewFlagSet("spoof", flag.ContinueOnError)
	src := fs.String("src", "", "source address to write into the packets")
	sport := fs.Uint("sport", 40000, "source port")
	count := fs.Int("count", 50, "packets to send")
	every := fs.Duration("interval", 10*time.Millisecond, "time between packets")
	ack := fs.Bool("tcp-ack", false, "send TCP ACK segments (a reply no connection asked for) instead of UDP datagrams")
	vary := fs.Bool("vary-ports", false, "one new flow per packet: source port sport+i%50000, destination port PORT+i/50000")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("spoof needs exactly one DST:PORT")
	}
	dst, err := netip.ParseAddrPort(fs.Arg(0))
	if err != nil {
		return err
	}
	s, err := netip.ParseAddr(*src)
	if err != nil {
		return fmt.Errorf("--src: %w", err)
	}
	s, d := s.Unmap(), dst.Addr().Unmap()
	if s.Is4() != d.Is4() {
		return errors.New("--src and DST must be of one family")
	}
	proto := unix.IPPROTO_UDP
	name := "udp"
	if *ack {
		proto, name = unix.IPPROTO_TCP, "tcp-ack"
	}
	var fd int
	var sa unix.Sockaddr
	if d.Is4() {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW) // IP_HDRINCL implied
		sa = &unix.SockaddrInet4{Addr: d.As4()}
	} else {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW) // IPV6_HDRINCL implied
		sa = &unix.SockaddrInet6{Addr: d.As16()}
	}
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	sent := 0
	for i := 0; i < *count; i++ {
		sp, dp := uint16(*sport), dst.Port()
		if *vary {
			sp, dp = sp+uint16(i%50000), dp+uint16(i/50000)
		}
		pkt := buildPacket(s, d, sp, dp, proto, []byte(fmt.Sprintf("spoof %d", i)))
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		sent++
		if *every > 0 {
			time.Sleep(*every)
		}
	}
	fmt.Printf("probe: spoof sent %d %s %s -> %s at %d\n", sent, name, netip.AddrPortFrom(s, uint16(*sport)), dst, stamp())
	return nil
}

// buildPacket returns an IP packet (v4 or v6 by the addresses) carrying a UDP datagram
// or a TCP ACK segment with payload, checksums filled in.
func buildPacket(src, dst netip.Addr, sport, dport uint16, proto int, payload []byte) []byte {
	var l4 []byte
	if proto == unix.IPPROTO_UDP {
		l4 = make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], payload)
	} else {
		l4 = make([]byte, 20+len(payload))
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint32(l4[4:], 1000) // seq
		binary.BigEndian.PutUint32(l4[8:], 2000) // ack
		l4[12] = 5 << 4
		l4[13] = 0x10 // ACK
		binary.BigEndian.PutUint16(l4[14:], 65535)
		copy(l4[20:], payload)
	}
	// Pseudo-header checksum over source, destination, protocol and length.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.AsSlice(), dst.AsSlice()
	add(s)
	add(d)
	sum += uint32(proto) + uint32(len(l4))
	add(l4)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	ck := ^uint16(sum)
	if ck == 0 && proto == unix.IPPROTO_UDP {
		ck = 0xffff
	}
	off := 6
	if proto == unix.IPPROTO_TCP {
		off = 16
	}
	binary.BigEndian.PutUint16(l4[off:], ck)

	if src.Is4() {
		ip := make([]byte, 20, 20+len(l4))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4))) // the kernel fills it in too
		ip[8] = 64
		ip[9] = byte(proto)
		copy(ip[12:], s)
		copy(ip[16:], d)
		return append(ip, l4...)
	}
	ip := make([]byte, 40, 40+len(l4))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6] = byte(proto)
	ip[7] = 64
	copy(ip[8:], s)
	copy(ip[24:], d)
	return append(ip, l4...)
}
