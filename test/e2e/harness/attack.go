package harness

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/strictgate/strictgate/test/cluster"
)

// What the fail-closed suites read from the probe's log (test/images/probe/flood.go):
// every accept and datagram at the receiving socket, and a flood's first answers.

// Recv is one `probe: recv` line: a TCP accept or a UDP datagram at a server socket.
type Recv struct {
	Proto  string
	Local  netip.AddrPort
	Remote netip.AddrPort
	At     time.Time
}

// FloodOK is one `probe: flood ok` line: the first answer a flood got from a target.
type FloodOK struct {
	Proto  string
	Target netip.AddrPort
	At     time.Time
}

// ProbeLog is a probe container's log, parsed.
type ProbeLog struct {
	Recvs []Recv
	OKs   []FloodOK
	// Holds are the `probe hold` lines (up, broken, ok), in order.
	Holds []string
}

// ParseProbeLog reads the lines the probe prints for the fail-closed suites.
func ParseProbeLog(log string) ProbeLog {
	var pl ProbeLog
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 8 && f[0] == "probe:" && f[1] == "recv" && f[4] == "from" && f[6] == "at":
			l, err1 := netip.ParseAddrPort(f[3])
			r, err2 := netip.ParseAddrPort(f[5])
			at, err3 := parseStamp(f[7])
			if err1 == nil && err2 == nil && err3 == nil {
				pl.Recvs = append(pl.Recvs, Recv{Proto: f[2], Local: unmap(l), Remote: unmap(r), At: at})
			}
		case len(f) == 7 && f[0] == "probe:" && f[1] == "flood" && f[2] == "ok" && f[5] == "at":
			tg, err1 := netip.ParseAddrPort(f[4])
			at, err2 := parseStamp(f[6])
			if err1 == nil && err2 == nil {
				pl.OKs = append(pl.OKs, FloodOK{Proto: f[3], Target: unmap(tg), At: at})
			}
		case len(f) >= 2 && f[0] == "probe:" && f[1] == "hold":
			pl.Holds = append(pl.Holds, sc.Text())
		}
	}
	return pl
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

func parseStamp(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n), nil
}

// From returns the receptions whose remote address is from (any port) and, when
// port is not 0, whose local port is port.
func (pl ProbeLog) From(from netip.Addr, proto string, port uint16) []Recv {
	var out []Recv
	for _, r := range pl.Recvs {
		if r.Remote.Addr() == from && (proto == "" || r.Proto == proto) && (port == 0 || r.Local.Port() == port) {
			out = append(out, r)
		}
	}
	return out
}

// FirstOK returns the first flood answer from target, or false.
func (pl ProbeLog) FirstOK(proto string, target netip.AddrPort) (FloodOK, bool) {
	for _, o := range pl.OKs {
		if o.Proto == proto && o.Target == target {
			return o, true
		}
	}
	return FloodOK{}, false
}

// NextPodIPs returns the n IPv4 addresses host-local hands out next on the cluster's
// node (it allocates round-robin after the last one it reserved), so a flood can aim
// at a pod before the pod exists.
func NextPodIPs(cl *cluster.Cluster, n int) ([]netip.Addr, error) {
	pattern := filepath.Join(cl.Config.StateDir, "cni", "networks", "*", "last_reserved_ip.0")
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) != 1 {
		return nil, fmt.Errorf("host-local state %s: %d files (%v)", pattern, len(files), err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return nil, err
	}
	last, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("host-local last reserved IP %q: %w", b, err)
	}
	prefix, err := netip.ParsePrefix(cl.PodCIDR.String())
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	a := last
	for len(out) < n {
		a = a.Next()
		if !prefix.Contains(a) {
			a = prefix.Addr().Next() // wrap; host-local skips the network and gateway itself
			continue
		}
		b := a.As4()
		if b[3] == 0 || b[3] == 1 || b[3] == 255 {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// FloodSpec is the probe's --flood-to list: proto:ip:port for each address.
func FloodSpec(proto string, ips []netip.Addr, port int) string {
	var parts []string
	for _, ip := range ips {
		parts = append(parts, fmt.Sprintf("%s:%s:%d", proto, ip, port))
	}
	return strings.Join(parts, ",")
}

// GateTrue returns the lastTransitionTime of the pod's strictgate condition when it is
// True.
func GateTrue(p *corev1.Pod) (time.Time, bool) {
	c := Condition(p, GateCondition)
	if c == nil || c.Status != corev1.ConditionTrue {
		return time.Time{}, false
	}
	return c.LastTransitionTime.Time, true
}
