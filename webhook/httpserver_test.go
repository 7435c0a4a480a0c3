package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// listeners are the three servers of the webhook process, started for one test.
type listeners struct {
	webhook         string // host:port of the HTTPS admission server
	metrics, health string // host:port of the plain-HTTP servers
}

// startListeners starts the admission, metrics and health servers on loopback with at
// most maxConns connections each, as newManager wires them; they stop when the test
// ends. Set the timeouts before calling it: servers copy them when built.
func startListeners(t *testing.T, maxConns int) listeners {
	t.Helper()
	dir := t.TempDir() // before the cleanup below, so removed after the servers stopped
	ctx, cancel := context.WithCancel(context.Background())
	var stopped []chan error
	t.Cleanup(func() {
		cancel()
		for _, c := range stopped {
			if err := <-c; err != nil {
				t.Errorf("server stopped with %v", err)
			}
		}
	})
	run := func(start func(context.Context) error) {
		c := make(chan error, 1)
		stopped = append(stopped, c)
		go func() { c <- start(ctx) }()
	}

	writeTestCert(t, dir, "127.0.0.1")
	adm := newAdmissionServer("127.0.0.1", 0, dir, maxConns)
	adm.Register(PathMutatePod, Instrumented(PathMutatePod, testMutator()))
	run(adm.Start)

	m, err := plainServer(ctx, "metrics", "127.0.0.1:0", maxConns, metricsHandler(map[string]http.Handler{"/status": http.NotFoundHandler()}))
	if err != nil {
		t.Fatal(err)
	}
	run(m.Start)
	h, err := plainServer(ctx, "health probe", "127.0.0.1:0", maxConns,
		probeHandler(map[string]healthz.Checker{"ping": healthz.Ping}, map[string]healthz.Checker{"webhook-tls": adm.StartedChecker()}))
	if err != nil {
		t.Fatal(err)
	}
	run(h.Start)

	ready := adm.StartedChecker()
	req, _ := http.NewRequest(http.MethodGet, "/readyz", nil)
	for deadline := time.Now().Add(10 * time.Second); ready(req) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("admission server not ready: %v", ready(req))
		}
	}
	adm.mu.Lock()
	defer adm.mu.Unlock()
	return listeners{webhook: adm.addr, metrics: m.Listener.Addr().String(), health: h.Listener.Addr().String()}
}

// withHeaderTimeout shortens the listeners' header timeout for one test.
func withHeaderTimeout(t *testing.T, d time.Duration) {
	old := readHeaderTimeout
	readHeaderTimeout = d
	t.Cleanup(func() { readHeaderTimeout = old })
}

// dialTLS completes a TLS handshake with the admission server offering alpn.
func dialTLS(addr string, alpn ...string) (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true, NextProtos: alpn}} //nolint:gosec // test certificate
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// trickle starts sending a request's headers one byte every 200ms, forever, like a
// slowloris client; it stops when a write fails or the test ends.
func trickle(t *testing.T, c net.Conn) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done); c.Close() })
	go func() {
		head := "POST " + PathMutatePod + " HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
		for i := 0; ; i++ {
			if _, err := c.Write([]byte{head[i%len(head)]}); err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// closedByServer says whether the server closes c within d: a read ends with EOF or a
// reset, not with the client's own deadline.
func closedByServer(c net.Conn, d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("still open after %v", d)
	}
	return nil // EOF (nil from ReadAll), a reset or a TLS alert: closed by the server
}

// TestSlowClientsAreDisconnected: a client that completes the TLS handshake (or not)
// and then sends its headers one byte at a time is disconnected once the header
// timeout has passed, on every listener, whatever it offers over ALPN. Found by an
// outside probe: 300 such connections were all still open after 40s.
func TestSlowClientsAreDisconnected(t *testing.T) {
	const timeout = time.Second
	withHeaderTimeout(t, timeout)
	l := startListeners(t, DefaultMaxConnections)
	plain := func(addr string) func() (net.Conn, error) {
		return func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
	}
	tlsWith := func(alpn ...string) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c, err := dialTLS(l.webhook, alpn...)
			if err == nil && c.ConnectionState().NegotiatedProtocol == "h2" {
				c.Close()
				return nil, errors.New("server negotiated h2")
			}
			return c, err
		}
	}
	for _, tt := range []struct {
		name string
		dial func() (net.Conn, error)
		// handshakeMayFail: the server may refuse the TLS handshake outright (a client
		// offering only h2), which ends the connection too.
		handshakeMayFail bool
	}{
		{"admission, no ALPN", tlsWith(), false},
		{"admission, ALPN http/1.1", tlsWith("http/1.1"), false},
		{"admission, ALPN h2 and http/1.1", tlsWith("h2", "http/1.1"), false},
		{"admission, ALPN h2 only", tlsWith("h2"), true},
		{"admission, TCP without TLS handshake", plain(l.webhook), false},
		{"metrics", plain(l.metrics), false},
		{"health probes", plain(l.health), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := tt.dial()
			if err != nil {
				if tt.handshakeMayFail && !strings.Contains(err.Error(), "h2") {
					return
				}
				t.Fatal(err)
			}
			trickle(t, c)
			if err := closedByServer(c, 5*timeout); err != nil {
				t.Fatalf("slow client: %v, want the server to close it after the %v header timeout", err, timeout)
			}
		})
	}
}

// TestHeaderLimit: headers beyond maxHeaderBytes (plus net/http's 4 KiB slack) are
// answered 431 on every listener; a few KiB are fine.
func TestHeaderLimit(t *testing.T) {
	l := startListeners(t, DefaultMaxConnections)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test certificate
	defer client.CloseIdleConnections()
	for _, tt := range []struct {
		name   string
		url    string
		header int
		want   int
	}{
		{"admission, 32 KiB", "https://" + l.webhook + PathMutatePod, 32 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"metrics, 32 KiB", "http://" + l.metrics + "/metrics", 32 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"health, 32 KiB", "http://" + l.health + "/healthz", 32 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"health, 8 KiB", "http://" + l.health + "/healthz", 8 << 10, http.StatusOK},
		{"readyz subpath", "http://" + l.health + "/readyz/webhook-tls", 0, http.StatusOK},
		{"status beside metrics", "http://" + l.metrics + "/status", 0, http.StatusNotFound}, // the test's /status handler
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			if tt.header > 0 {
				req.Header.Set("X-Big", strings.Repeat("h", tt.header))
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("GET %s with %d header bytes: %d, want %d", tt.url, tt.header, resp.StatusCode, tt.want)
			}
		})
	}
}

// TestConnectionLimit: with the limit set to N, N slow connections make the N+1-th
// wait to be accepted (its TLS handshake does not complete) until one of them closes;
// once the header timeout has dropped the rest, reviews are answered again.
func TestConnectionLimit(t *testing.T) {
	const n, timeout = 2, 2 * time.Second
	withHeaderTimeout(t, timeout)
	l := startListeners(t, n)

	slow := make([]*tls.Conn, n)
	for i := range slow {
		c, err := dialTLS(l.webhook)
		if err != nil {
			t.Fatal(err)
		}
		trickle(t, c)
		slow[i] = c
	}
	held := time.Now() // the slow connections are dropped no earlier than timeout from here
	// Readiness does not need a connection slot: a flood that holds them all must not
	// also take the replica out of its Service.
	if err := httpOK("http://" + l.health + "/readyz"); err != nil {
		t.Fatalf("readyz while every admission slot is held: %v", err)
	}

	type result struct {
		c   *tls.Conn
		err error
	}
	next := make(chan result, 1)
	go func() { c, err := dialTLS(l.webhook); next <- result{c, err} }()
	select {
	case r := <-next:
		if time.Since(held) < timeout {
			t.Fatalf("connection %d accepted while %d slow ones were open (err %v)", n+1, n, r.err)
		}
		t.Skip("the machine is too slow to observe the wait before the header timeout")
	case <-time.After(timeout / 4):
	}

	slow[0].Close()
	r := <-next
	if r.err != nil {
		t.Fatalf("connection %d after one slow one closed: %v", n+1, r.err)
	}
	r.c.Close()

	for _, c := range slow[1:] {
		if err := closedByServer(c, 5*timeout); err != nil {
			t.Fatalf("slow connection: %v", err)
		}
	}
	// All slots are free again: n reviews at once are answered.
	pod := podJSON(t, &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}})
	body := review(t, podRequest("team-a", admissionv1.Create, pod).AdmissionRequest)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // test certificate
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := client.Post("https://"+l.webhook+PathMutatePod, "application/json", bytes.NewReader(body))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("review after the slow connections were dropped: %v", err)
		}
	}
}
