package main

// The attack side of the probe, for the fail-closed suites (test/e2e): a flood that
// fires from the process's first instruction, a receiver log that records every accept
// and datagram at the socket with a timestamp, and long-lived connections that report
// any break. Every line is greppable and carries `at <unix nanoseconds>`; the pods share
// the node's clock, so tests compare these times with the API server's.
//
//	probe serve --log-recv --flood-to tcp:10.244.0.20-29:8080,udp:10.244.0.5:8081 ...
//	    probe: recv tcp 10.244.0.7:8080 from 10.244.0.5:41234 at 1733230000123456789
//	    probe: flood ok tcp 10.244.0.7:8080 at 1733230000123456789   (first answer per target)
//	probe hold --conns 20 --every 100ms HOST:PORT      (against a --stream port)
//	    probe: hold up 20 at T / probe: hold broken 3 at T: <error> / probe: hold ok 20 rounds=N at T

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// logRecv makes the servers print one line per TCP accept and UDP datagram.
var logRecv atomic.Bool

func stamp() int64 { return time.Now().UnixNano() }

func recvLine(proto string, local, remote net.Addr) {
	if logRecv.Load() {
		fmt.Printf("probe: recv %s %s from %s at %d\n", proto, local, remote, stamp())
	}
}

// floodTarget is one proto:address:port the flood fires at.
type floodTarget struct {
	proto string
	addr  string // host:port
}

// parseFlood reads "proto:HOST:port,..." where HOST may be an IPv4 range of the last
// octet ("10.244.0.20-29"), so a flood can cover the addresses a pod may get before
// it exists.
func parseFlood(spec string) ([]floodTarget, error) {
	var out []floodTarget
	for _, item := range split(spec) {
		proto, rest, ok := strings.Cut(item, ":")
		if !ok || (proto != "tcp" && proto != "udp") {
			return nil, fmt.Errorf("flood target %q: want tcp:HOST:PORT or udp:HOST:PORT", item)
		}
		i := strings.LastIndex(rest, ":")
		if i < 0 {
			return nil, fmt.Errorf("flood target %q: no port", item)
		}
		host, port := strings.Trim(rest[:i], "[]"), rest[i+1:]
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("flood target %q: port: %w", item, err)
		}
		first, last, isRange := strings.Cut(host, "-")
		if !isRange {
			out = append(out, floodTarget{proto, net.JoinHostPort(host, port)})
			continue
		}
		a, err := netip.ParseAddr(first)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("flood target %q: range needs an IPv4 start: %v", item, err)
		}
		end, err := strconv.ParseUint(last, 10, 8)
		b := a.As4()
		if err != nil || uint64(b[3]) > end {
			return nil, fmt.Errorf("flood target %q: range end %q", item, last)
		}
		for o := uint64(b[3]); o <= end; o++ {
			b[3] = byte(o)
			out = append(out, floodTarget{proto, net.JoinHostPort(netip.AddrFrom4(b).String(), port)})
		}
	}
	return out, nil
}

// startFlood fires at every target every interval until the process ends: a TCP
// connect (with at most 64 in flight per target) that sends a line and waits for the
// answer, or a UDP datagram. The first answer per TCP target is printed.
func startFlood(targets []floodTarget, interval, timeout time.Duration) {
	for _, t := range targets {
		go func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			if t.proto == "udp" {
				var c net.Conn
				for seq := 0; ; seq++ {
					if c == nil {
						c, _ = net.Dial("udp", t.addr) // fails while the address has no route
					}
					if c != nil {
						if _, err := fmt.Fprintf(c, "flood %d", seq); err != nil && !isTransient(err) {
							c.Close()
							c = nil
						}
					}
					<-tick.C
				}
			}
			var inFlight atomic.Int32
			var once sync.Once
			for {
				if inFlight.Load() < 64 {
					inFlight.Add(1)
					go func() {
						defer inFlight.Add(-1)
						if _, err := connect("tcp", t.addr, "flood", timeout); err == nil {
							once.Do(func() { fmt.Printf("probe: flood ok tcp %s at %d\n", t.addr, stamp()) })
						}
					}()
				}
				<-tick.C
			}
		}()
	}
}

// isTransient: errors a connected UDP socket reports for an earlier datagram (ICMP
// unreachable); the socket stays usable.
func isTransient(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "refused")
}

// serveStream echoes every line of every connection until the peer closes, for the
// long-lived connections of `probe hold`.
func (s *server) serveStream(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		recvLine("tcp", c.LocalAddr(), c.RemoteAddr())
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}()
	}
}

// holdCmd keeps conns TCP connections to a --stream port open and exchanges a line on
// each every interval; a connection that fails (reset, timeout, wrong answer) is
// reported once and not replaced, so a test counts breaks from the log.
func holdCmd(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	conns := fs.Int("conns", 20, "connections to hold")
	every := fs.Duration("every", 100*time.Millisecond, "exchange a line on each connection this often")
	timeout := fs.Duration("timeout", 3*time.Second, "an exchange slower than this breaks the connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("hold needs exactly one HOST:PORT")
	}
	target := fs.Arg(0)
	var cs []net.Conn
	for len(cs) < *conns {
		c, err := net.DialTimeout("tcp", target, *timeout)
		if err != nil {
			// Not up yet (the pod's policy may not be programmed): keep trying.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		cs = append(cs, c)
	}
	fmt.Printf("probe: hold up %d at %d\n", len(cs), stamp())
	var alive atomic.Int32
	alive.Store(int32(len(cs)))
	var rounds atomic.Int64
	for i, c := range cs {
		go func() {
			r := bufio.NewReader(c)
			for n := 0; ; n++ {
				c.SetDeadline(time.Now().Add(*timeout))
				msg := fmt.Sprintf("hold %d %d\n", i, n)
				_, err := io.WriteString(c, msg)
				var got string
				if err == nil {
					got, err = r.ReadString('\n')
				}
				if err == nil && got != msg {
					err = fmt.Errorf("answer %q, want %q", got, msg)
				}
				if err != nil {
					alive.Add(-1)
					fmt.Printf("probe: hold broken %d at %d: %v\n", i, stamp(), err)
					c.Close()
					return
				}
				rounds.Add(1)
				time.Sleep(*every)
			}
		}()
	}
	for {
		time.Sleep(time.Second)
		fmt.Printf("probe: hold ok %d rounds=%d at %d\n", alive.Load(), rounds.Load(), stamp())
	}
}

// ping sends a datagram to target every interval from a socket of its own on port
// from, which answers nothing and logs (with --log-recv) every datagram it gets: the pod
// has a UDP flow whose replies arrive at a socket that accepts datagrams from anyone,
// so the spoofed-reply test counts who else gets in. (An echoing socket would ping-pong
// with the target's echo forever.)
func (s *server) ping(from, target string, every time.Duration) error {
	to, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return err
	}
	c, err := net.ListenPacket("udp", net.JoinHostPort("", from))
	if err != nil {
		return fmt.Errorf("listen udp %s for --ping: %w", from, err)
	}
	s.closers = append(s.closers, c)
	go func() {
		buf := make([]byte, 65535)
		for {
			_, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			recvLine("udp", c.LocalAddr(), addr)
		}
	}()
	go func() {
		for seq := 0; ; seq++ {
			c.WriteTo([]byte(fmt.Sprintf("ping %d", seq)), to)
			time.Sleep(every)
		}
	}()
	return nil
}
