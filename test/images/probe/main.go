// Command probe is the test workload of the one-node cluster, in the spirit of agnhost's
// netexec: a server that answers on TCP, UDP and HTTP ports with its own hostname, and a
// client that connects once and prints the answer, for connectivity checks run with
// `kubectl exec` (the image has no shell, so the client lives in the same binary).
//
//	probe serve [--tcp 8080] [--udp 8081] [--http 8082]     (comma-separated lists; "" = off)
//	probe connect [--protocol tcp|udp|http] [--timeout 3s] [--message m] HOST:PORT
//	probe hold [--conns 20] [--every 100ms] HOST:PORT        (see flood.go)
//	probe spoof --src IP [--tcp-ack] DST:PORT                  (see spoof.go)
//
// TCP: the server reads one line and answers "<hostname> <line>\n". UDP: every datagram
// is answered with "<hostname> <payload>". HTTP: /hostname, /healthz, /echo?msg=,
// /clientip, /dial?protocol=&target=&msg=&timeout= (connect from here, answer or 502).
// The client prints the answer and exits 0, or prints the error and exits 1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe serve|connect|hold|spoof [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serveCmd(os.Args[2:])
	case "hold":
		err = holdCmd(os.Args[2:])
	case "spoof":
		err = spoofCmd(os.Args[2:])
	case "connect":
		var answer string
		answer, err = connectCmd(os.Args[2:])
		if err == nil {
			fmt.Println(answer)
		}
	default:
		err = fmt.Errorf("unknown sub-command %q: want serve, connect, hold or spoof", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func serveCmd(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	tcp := fs.String("tcp", envOr("PROBE_TCP", "8080"), "TCP echo ports, comma-separated")
	udp := fs.String("udp", envOr("PROBE_UDP", "8081"), "UDP echo ports, comma-separated")
	web := fs.String("http", envOr("PROBE_HTTP", "8082"), "HTTP ports, comma-separated")
	addr := fs.String("address", "", "address to listen on (default: all)")
	stream := fs.String("stream", "", "TCP ports echoing every line until the peer closes (for probe hold)")
	logRecvFlag := fs.Bool("log-recv", false, "print a line per TCP accept and UDP datagram, with its time")
	floodTo := fs.String("flood-to", "", "fire at proto:HOST:PORT,... (HOST may be a.b.c.d-e) from the first instruction on")
	floodEvery := fs.Duration("flood-interval", 5*time.Millisecond, "time between two shots at one flood target")
	floodTimeout := fs.Duration("flood-timeout", 300*time.Millisecond, "TCP flood: connect+answer timeout")
	ping := fs.String("ping", "", "send a UDP datagram to HOST:PORT every 100ms from --ping-port (its answers show in --log-recv)")
	pingPort := fs.String("ping-port", "7000", "local UDP port of --ping; it answers nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *floodTo != "" {
		targets, err := parseFlood(*floodTo)
		if err != nil {
			return err
		}
		// Before listening: the pod sends before it does anything else.
		startFlood(targets, *floodEvery, *floodTimeout)
	}
	logRecv.Store(*logRecvFlag)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := listen(*addr, split(*tcp), split(*udp), split(*web))
	if err != nil {
		return err
	}
	defer s.Close()
	if *ping != "" {
		if err := s.ping(*pingPort, *ping, 100*time.Millisecond); err != nil {
			return err
		}
	}
	for _, p := range split(*stream) {
		l, err := net.Listen("tcp", net.JoinHostPort(*addr, p))
		if err != nil {
			return fmt.Errorf("listen stream %s: %w", p, err)
		}
		s.closers = append(s.closers, l)
		s.addrs = append(s.addrs, "stream "+l.Addr().String())
		go s.serveStream(l)
	}
	for _, a := range s.Addrs() {
		fmt.Println("probe: listening on", a)
	}
	<-ctx.Done()
	return nil
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// server holds every listener of one `probe serve`.
type server struct {
	host    string
	closers []io.Closer
	addrs   []string
}

func (s *server) Addrs() []string { return s.addrs }

func (s *server) Close() error {
	for _, c := range s.closers {
		c.Close()
	}
	return nil
}

func listen(addr string, tcpPorts, udpPorts, httpPorts []string) (*server, error) {
	host, _ := os.Hostname()
	s := &server{host: host}
	for _, p := range tcpPorts {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, p))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen tcp %s: %w", p, err)
		}
		s.closers = append(s.closers, l)
		s.addrs = append(s.addrs, "tcp "+l.Addr().String())
		go s.serveTCP(l)
	}
	for _, p := range udpPorts {
		c, err := net.ListenPacket("udp", net.JoinHostPort(addr, p))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen udp %s: %w", p, err)
		}
		s.closers = append(s.closers, c)
		s.addrs = append(s.addrs, "udp "+c.LocalAddr().String())
		go s.serveUDP(c)
	}
	for _, p := range httpPorts {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, p))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen http %s: %w", p, err)
		}
		srv := &http.Server{Handler: s.mux(), ReadHeaderTimeout: 5 * time.Second}
		s.closers = append(s.closers, srv)
		s.addrs = append(s.addrs, "http "+l.Addr().String())
		go srv.Serve(l)
	}
	return s, nil
}

func (s *server) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		recvLine("tcp", c.LocalAddr(), c.RemoteAddr())
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(io.LimitReader(c, 4096)).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			fmt.Printf("probe: tcp from %s: %q\n", c.RemoteAddr(), line)
			fmt.Fprintf(c, "%s %s\n", s.host, line)
		}()
	}
}

func (s *server) serveUDP(c net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		recvLine("udp", c.LocalAddr(), from)
		msg := strings.TrimRight(string(buf[:n]), "\r\n")
		fmt.Printf("probe: udp from %s: %q\n", from, msg)
		c.WriteTo([]byte(s.host+" "+msg), from)
	}
}

func (s *server) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	m.HandleFunc("/hostname", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s.host) })
	m.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	// /dial makes this pod the client: /dial?protocol=udp&target=10.244.0.7:8081 answers
	// with the target's answer (200) or the error (502), like agnhost netexec's /dial,
	// so a test can check pod-to-pod paths with one HTTP request instead of an exec.
	m.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		proto := q.Get("protocol")
		if proto == "" {
			proto = "tcp"
		}
		timeout, err := time.ParseDuration(q.Get("timeout"))
		if err != nil || timeout <= 0 || timeout > time.Minute {
			timeout = 3 * time.Second
		}
		msg := q.Get("msg")
		if msg == "" {
			msg = "hello"
		}
		answer, err := connect(proto, q.Get("target"), msg, timeout)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, answer)
	})
	m.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("probe: http from %s: %q\n", r.RemoteAddr, r.URL.Query().Get("msg"))
		io.WriteString(w, s.host+" "+r.URL.Query().Get("msg"))
	})
	return m
}

func connectCmd(args []string) (string, error) {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	proto := fs.String("protocol", "tcp", "tcp, udp or http")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	msg := fs.String("message", "hello", "what to send")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", errors.New("connect needs exactly one HOST:PORT")
	}
	return connect(*proto, fs.Arg(0), *msg, *timeout)
}

// connect sends msg to target once and returns the server's answer.
func connect(proto, target, msg string, timeout time.Duration) (string, error) {
	switch proto {
	case "tcp":
		c, err := net.DialTimeout("tcp", target, timeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
			return "", fmt.Errorf("send to %s: %w", target, err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("read from %s: %w", target, err)
		}
		return strings.TrimRight(line, "\n"), nil
	case "udp":
		c, err := net.DialTimeout("udp", target, timeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		buf := make([]byte, 65535)
		// UDP loses packets by design; resend a few times within the timeout.
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			if _, err := c.Write([]byte(msg)); err != nil {
				return "", fmt.Errorf("send to %s: %w", target, err)
			}
			c.SetReadDeadline(minTime(deadline, time.Now().Add(500*time.Millisecond)))
			n, err := c.Read(buf)
			if err == nil {
				return string(buf[:n]), nil
			}
		}
		return "", fmt.Errorf("no udp answer from %s within %s", target, timeout)
	case "http":
		cl := &http.Client{Timeout: timeout}
		resp, err := cl.Get("http://" + target + "/echo?msg=" + msg)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("http %s: %s", target, resp.Status)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("unknown protocol %q: want tcp, udp or http", proto)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
