package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProbeAnswersEveryProtocol(t *testing.T) {
	s, err := listen("127.0.0.1", []string{"0"}, []string{"0"}, []string{"0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	host, _ := os.Hostname()
	port := map[string]string{}
	for _, a := range s.Addrs() {
		f := strings.Fields(a)
		port[f[0]] = f[1]
	}
	tests := []struct{ proto, target, msg string }{
		{"tcp", port["tcp"], "over-tcp"},
		{"udp", port["udp"], "over-udp"},
		{"http", port["http"], "over-http"},
	}
	for _, tt := range tests {
		t.Run(tt.proto, func(t *testing.T) {
			got, err := connect(tt.proto, tt.target, tt.msg, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if want := host + " " + tt.msg; got != want {
				t.Fatalf("answer %q, want %q", got, want)
			}
		})
	}
}

func TestProbeConnectFailsWhenNothingListens(t *testing.T) {
	s, err := listen("127.0.0.1", []string{"0"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.Fields(s.Addrs()[0])[1]
	s.Close()
	for _, proto := range []string{"tcp", "udp", "http", "sctp"} {
		if got, err := connect(proto, addr, "x", 700*time.Millisecond); err == nil {
			t.Errorf("%s to closed %s: got answer %q, want error", proto, addr, got)
		}
	}
}

func TestProbeDialRelaysAnswersAndErrors(t *testing.T) {
	s, err := listen("127.0.0.1", []string{"0"}, []string{"0"}, []string{"0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := map[string]string{}
	for _, a := range s.Addrs() {
		f := strings.Fields(a)
		port[f[0]] = f[1]
	}
	host, _ := os.Hostname()
	tests := []struct {
		name, query, want string
		status            int
	}{
		{"tcp", "protocol=tcp&msg=x&target=" + port["tcp"], host + " x", 200},
		{"udp", "protocol=udp&msg=y&target=" + port["udp"], host + " y", 200},
		{"nothing there", "protocol=tcp&timeout=300ms&target=127.0.0.1:1", "", 502},
		{"bad protocol", "protocol=sctp&target=" + port["tcp"], "", 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get("http://" + port["http"] + "/dial?" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || (tt.want != "" && string(b) != tt.want) {
				t.Fatalf("/dial?%s = %d %q, want %d %q", tt.query, resp.StatusCode, b, tt.status, tt.want)
			}
		})
	}
}

func TestParseFloodRange(t *testing.T) {
	got, err := parseFlood("tcp:10.244.0.20-22:8080,udp:[fd00::1]:8081")
	if err != nil {
		t.Fatal(err)
	}
	want := []floodTarget{{"tcp", "10.244.0.20:8080"}, {"tcp", "10.244.0.21:8080"}, {"tcp", "10.244.0.22:8080"}, {"udp", "[fd00::1]:8081"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"sctp:1.2.3.4:1", "tcp:1.2.3.4", "tcp:1.2.3.9-3:80", "tcp:fd00::1-3:80"} {
		if _, err := parseFlood(bad); err == nil {
			t.Errorf("parseFlood(%q) accepted", bad)
		}
	}
}

// TestFloodReachesServerAndHoldSurvives: the flood's shots arrive at a server and the
// first TCP answer is reported; held connections on a stream port keep answering.
func TestFloodReachesServerAndHoldSurvives(t *testing.T) {
	s, err := listen("127.0.0.1", []string{"0"}, []string{"0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go s.serveStream(l)
	var targets []floodTarget
	for _, a := range s.Addrs() {
		f := strings.Fields(a)
		targets = append(targets, floodTarget{f[0], f[1]})
	}
	startFlood(targets, 5*time.Millisecond, time.Second)
	for _, tg := range targets {
		if _, err := connect(tg.proto, tg.addr, "x", 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := range 3 {
		msg := fmt.Sprintf("line %d\n", i)
		io.WriteString(c, msg)
		if got, err := r.ReadString('\n'); err != nil || got != msg {
			t.Fatalf("stream answer %q %v, want %q", got, err, msg)
		}
	}
}

// TestPrivilegedSpoofWritesTheGivenSource: probe spoof's packets arrive with the source
// address it was given, not the sender's (over loopback, IPv4 and IPv6).
func TestPrivilegedSpoofWritesTheGivenSource(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raw sockets need root")
	}
	for _, tc := range []struct{ listen, src string }{{"127.0.0.1:0", "127.0.0.9"}, {"[::1]:0", "::1"}} {
		c, err := net.ListenPacket("udp", tc.listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dst := c.LocalAddr().String()
		go func() {
			if err := spoofCmd([]string{"--src", tc.src, "--sport", "4242", "--count", "3", "--interval", "1ms", dst}); err != nil {
				t.Error(err)
			}
		}()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 100)
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: %v", tc.listen, err)
		}
		ua := from.(*net.UDPAddr)
		if ua.IP.String() != tc.src || ua.Port != 4242 || !strings.HasPrefix(string(buf[:n]), "spoof ") {
			t.Fatalf("got %q from %s, want from %s:4242", buf[:n], from, tc.src)
		}
	}
}
