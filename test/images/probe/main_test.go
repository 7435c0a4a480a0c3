package main

import (
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
