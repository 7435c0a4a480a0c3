// Package cniserver is the local channel between the chained CNI plugin and the node's
// agent: at CNI ADD the plugin asks the agent to program the new pod now, so the pod's
// policy is in the kernel before its containers start (program at ADD).
//
// The channel is a unix socket on the node, mode 0600 and owned by root: only root
// (the container runtime running the plugin, or the agent itself) can connect, and the
// server also checks the peer's credentials (SO_PEERCRED uid 0), so a pod that
// somehow sees the path cannot ask for anything. One connection carries one request
// and one response, each a single JSON object of at most MaxMessage bytes; the client
// half-closes after its request. Unknown fields, other versions, and oversized or
// malformed messages are refused with an error response and change nothing.
package cniserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Version is the protocol version both ends speak. A request with another version is
// refused (the plugin and the agent come from the same image, so a mismatch is a
// half-finished upgrade; the pod then simply waits for the agent's normal path).
const Version = 1

// MaxMessage bounds a request or response: a pod key, a few IPs and an interface name
// fit many times over; anything larger is not from our plugin.
const MaxMessage = 4096

// maxIPs bounds the IPs of one request (dual stack needs two).
const maxIPs = 8

// Request asks the agent to program one pod now.
type Request struct {
	Version int `json:"version"`
	// Namespace and Name come from CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME).
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ContainerID is the sandbox's ID (for logs only).
	ContainerID string `json:"containerID,omitempty"`
	// IPs are the pod's addresses from prevResult.
	IPs []string `json:"ips"`
	// Interface and IfIndex name the host side of the pod's interface, as the plugin
	// attached the datapath to it.
	Interface string `json:"interface,omitempty"`
	IfIndex   int    `json:"ifindex"`
}

// Response is the agent's answer.
type Response struct {
	Version int `json:"version"`
	// Programmed: the pod's compiled rules are in the kernel and read back.
	Programmed bool `json:"programmed"`
	// Error says why not (the pod then stays in the mode's unprogrammed state until the
	// agent's normal reconcile programs it).
	Error string `json:"error,omitempty"`
}

// Addrs returns the request's IPs, parsed.
func (r *Request) Addrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(r.IPs))
	for _, s := range r.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// Validate reports the first problem with a request.
func (r *Request) Validate() error {
	if r.Version != Version {
		return fmt.Errorf("protocol version %d, this agent speaks %d", r.Version, Version)
	}
	if errs := validation.IsDNS1123Label(r.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %v", r.Namespace, errs)
	}
	if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 {
		return fmt.Errorf("pod name %q: %v", r.Name, errs)
	}
	if len(r.IPs) == 0 || len(r.IPs) > maxIPs {
		return fmt.Errorf("%d IPs, want 1 to %d", len(r.IPs), maxIPs)
	}
	for _, s := range r.IPs {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("IP %q: %w", s, err)
		}
	}
	if r.IfIndex <= 0 {
		return fmt.Errorf("ifindex %d: want the host-side interface's index", r.IfIndex)
	}
	return nil
}

// ErrTooLarge means a message exceeded MaxMessage.
var ErrTooLarge = fmt.Errorf("message larger than %d bytes", MaxMessage)

// decode reads one JSON object of at most MaxMessage bytes from rd (to EOF) into v,
// refusing unknown fields and trailing data.
func decode(rd io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(rd, MaxMessage+1))
	if err != nil {
		return fmt.Errorf("read message: %w", err)
	}
	if len(b) > MaxMessage {
		return ErrTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("parse message: %w", err)
	}
	if dec.More() {
		return errors.New("parse message: trailing data after the JSON object")
	}
	return nil
}

// DecodeRequest reads and validates one request.
func DecodeRequest(rd io.Reader) (*Request, error) {
	var r Request
	if err := decode(rd, &r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("invalid request: %w", err)
	}
	return &r, nil
}

// DecodeResponse reads one response.
func DecodeResponse(rd io.Reader) (*Response, error) {
	var r Response
	if err := decode(rd, &r); err != nil {
		return nil, err
	}
	if r.Version != Version {
		return nil, fmt.Errorf("response protocol version %d, this plugin speaks %d", r.Version, Version)
	}
	return &r, nil
}

// encode writes v as one bounded JSON object.
func encode(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return ErrTooLarge
	}
	_, err = w.Write(b)
	return err
}
