package cniserver

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func validRequest() Request {
	return Request{Version: Version, Namespace: "team-a", Name: "web-0", IPs: []string{"10.1.0.5", "fd00::5"}, Interface: "veth1", IfIndex: 7}
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"valid", `{"version":1,"namespace":"a","name":"p","ips":["10.0.0.1"],"ifindex":3}`, ""},
		{"other version", `{"version":2,"namespace":"a","name":"p","ips":["10.0.0.1"],"ifindex":3}`, "protocol version 2"},
		{"no version", `{"namespace":"a","name":"p","ips":["10.0.0.1"],"ifindex":3}`, "protocol version 0"},
		{"unknown field", `{"version":1,"namespace":"a","name":"p","ips":["10.0.0.1"],"ifindex":3,"open":true}`, "unknown field"},
		{"trailing data", `{"version":1,"namespace":"a","name":"p","ips":["10.0.0.1"],"ifindex":3}{}`, "trailing data"},
		{"not JSON", `hello`, "parse message"},
		{"empty", ``, "parse message"},
		{"bad namespace", `{"version":1,"namespace":"A/b","name":"p","ips":["10.0.0.1"],"ifindex":3}`, "namespace"},
		{"no name", `{"version":1,"namespace":"a","name":"","ips":["10.0.0.1"],"ifindex":3}`, "pod name"},
		{"no IPs", `{"version":1,"namespace":"a","name":"p","ips":[],"ifindex":3}`, "0 IPs"},
		{"bad IP", `{"version":1,"namespace":"a","name":"p","ips":["10.0.0.300"],"ifindex":3}`, "IP \"10.0.0.300\""},
		{"no ifindex", `{"version":1,"namespace":"a","name":"p","ips":["10.0.0.1"]}`, "ifindex 0"},
		{"oversized", `{"version":1,"namespace":"a","name":"p","ips":["10.0.0.1"],"ifindex":3,"containerID":"` + strings.Repeat("x", MaxMessage) + `"}`, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeRequest(strings.NewReader(tc.in))
			if tc.wantErr == "" {
				if err != nil || r.Namespace != "a" || r.Addrs()[0].String() != "10.0.0.1" {
					t.Fatalf("got %+v, %v", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func serve(t *testing.T, h Handler, uid uint32) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sock", "agent.sock")
	s := &Server{Path: path, Handler: h, Timeout: 2 * time.Second, Log: logr.Discard(), allowUID: uid}
	l, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return path
}

func TestServerSocketPermissions(t *testing.T) {
	path := serve(t, func(context.Context, *Request) error { return nil }, uint32(os.Getuid()))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", di.Mode().Perm())
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary socket name left behind: %v", err)
	}
}

func TestServerRoundTrip(t *testing.T) {
	var got atomic.Pointer[Request]
	path := serve(t, func(_ context.Context, r *Request) error {
		got.Store(r)
		if r.Name == "fails" {
			return errors.New("no rules compiled yet")
		}
		return nil
	}, uint32(os.Getuid()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	req := validRequest()
	resp, err := Program(ctx, path, &req)
	if err != nil || !resp.Programmed || resp.Error != "" {
		t.Fatalf("valid request: %+v, %v", resp, err)
	}
	if g := got.Load(); g == nil || g.Namespace != "team-a" || g.IfIndex != 7 || len(g.IPs) != 2 {
		t.Errorf("handler got %+v", g)
	}

	req.Name = "fails"
	resp, err = Program(ctx, path, &req)
	if err != nil || resp.Programmed || !strings.Contains(resp.Error, "no rules compiled") {
		t.Fatalf("failing handler: %+v, %v, want Programmed=false with the handler's error", resp, err)
	}

	// A bad request never reaches the handler.
	got.Store(nil)
	bad := validRequest()
	bad.Version = 9
	resp, err = Program(ctx, path, &bad)
	if err != nil || resp.Programmed || !strings.Contains(resp.Error, "protocol version 9") || got.Load() != nil {
		t.Fatalf("bad version: %+v, %v, handler saw %+v", resp, err, got.Load())
	}
}

// An oversized message is refused without being read to its end and without calling
// the handler.
func TestServerRefusesOversized(t *testing.T) {
	var calls atomic.Int32
	path := serve(t, func(context.Context, *Request) error { calls.Add(1); return nil }, uint32(os.Getuid()))
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	// Not closing the write side: the server must stop at MaxMessage+1 bytes by itself.
	if _, err := c.Write([]byte(`{"version":1,"name":"` + strings.Repeat("x", 2*MaxMessage) + `"}`)); err != nil {
		t.Fatal(err)
	}
	resp, err := DecodeResponse(c)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Programmed || !strings.Contains(resp.Error, "larger than") || calls.Load() != 0 {
		t.Fatalf("oversized: %+v, handler calls %d", resp, calls.Load())
	}
}

// A peer with another uid is refused before its request is read.
func TestServerRefusesOtherUID(t *testing.T) {
	var calls atomic.Int32
	path := serve(t, func(context.Context, *Request) error { calls.Add(1); return nil }, uint32(os.Getuid())+4242)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := validRequest()
	resp, err := Program(ctx, path, &req)
	if err != nil || resp.Programmed || !strings.Contains(resp.Error, "refused") || calls.Load() != 0 {
		t.Fatalf("other uid: %+v, %v, handler calls %d", resp, err, calls.Load())
	}
}

// The plugin's wait is bounded by its context even when the agent hangs.
func TestProgramTimesOut(t *testing.T) {
	release := make(chan struct{})
	path := serve(t, func(ctx context.Context, _ *Request) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}, uint32(os.Getuid()))
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req := validRequest()
	if resp, err := Program(ctx, path, &req); err == nil {
		t.Fatalf("hanging agent answered %+v, want a timeout error", resp)
	}
}
