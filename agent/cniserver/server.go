package cniserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Handler programs the pod of a request; it returns once the rules are in the kernel
// (nil) or why not. ctx ends at the request's deadline.
type Handler func(ctx context.Context, r *Request) error

// Server answers program-at-ADD requests on a unix socket.
type Server struct {
	Path    string
	Handler Handler
	// Timeout bounds one request end to end (reading, programming, answering); the
	// plugin waits no longer anyway.
	Timeout time.Duration
	Log     logr.Logger
	// allowUID is the only peer uid accepted (root); a field so that tests can check
	// the refusal.
	allowUID uint32
}

// Listen creates the socket: a fresh file (a stale one from a previous agent is
// replaced), mode 0600, in a directory only root can enter. The socket is bound under
// a temporary name, restricted, and only then renamed into place, so there is no
// moment in which Path accepts connections with looser permissions.
func (s *Server) Listen() (net.Listener, error) {
	if s.Timeout <= 0 {
		s.Timeout = 5 * time.Second
	}
	dir := filepath.Dir(s.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict socket directory %s: %w", dir, err)
	}
	tmp := s.Path + ".tmp"
	_ = os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", tmp, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.Path); err != nil {
		l.Close()
		return nil, fmt.Errorf("move socket into place at %s: %w", s.Path, err)
	}
	return l, nil
}

// Serve answers requests on l until ctx ends, one goroutine per connection.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
		_ = os.Remove(s.Path)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.Log.Error(err, "accept CNI connection")
			continue
		}
		go s.handle(ctx, c.(*net.UnixConn))
	}
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer func() {
		// Half-close, then discard what the peer still sends (bounded by the deadline
		// and a byte limit): closing with unread input resets the connection and the
		// peer would lose the answer that says why it was refused.
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	resp := Response{Version: Version}
	if err := s.checkPeer(c); err != nil {
		resp.Error = err.Error()
		s.Log.Error(err, "refuse CNI connection")
		_ = encode(c, resp)
		return
	}
	req, err := DecodeRequest(c)
	if err != nil {
		resp.Error = err.Error()
		s.Log.Error(err, "refuse CNI request")
		_ = encode(c, resp)
		return
	}
	start := time.Now()
	if err := s.Handler(ctx, req); err != nil {
		resp.Error = err.Error()
		s.Log.Info("program at CNI ADD failed; the pod stays unprogrammed until the normal reconcile",
			"pod", req.Namespace+"/"+req.Name, "error", err.Error())
	} else {
		resp.Programmed = true
		s.Log.V(1).Info("programmed at CNI ADD", "pod", req.Namespace+"/"+req.Name, "took", time.Since(start).String())
	}
	if err := encode(c, resp); err != nil {
		s.Log.Error(err, "answer CNI request", "pod", req.Namespace+"/"+req.Name)
	}
}

// checkPeer accepts only root peers: the socket's mode already keeps others out; this
// is the second lock, independent of how the directory was mounted.
func (s *Server) checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred.Uid != s.allowUID {
		return fmt.Errorf("peer uid %d refused: only uid %d may ask the agent to program pods", cred.Uid, s.allowUID)
	}
	return nil
}

// Program sends r to the agent at path and waits for the answer until ctx ends.
func Program(ctx context.Context, path string, r *Request) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to the agent at %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	// A write error does not end the exchange: an agent that refuses the connection
	// answers before reading, and that answer says why.
	werr := encode(c, r)
	if werr == nil {
		werr = c.(*net.UnixConn).CloseWrite()
	}
	resp, err := DecodeResponse(c)
	if err != nil {
		if werr != nil {
			return nil, fmt.Errorf("send request: %w", werr)
		}
		return nil, fmt.Errorf("agent's answer: %w", err)
	}
	return resp, nil
}
